//! Properties of the XML security layer over generated documents (proptest): sign → verify and
//! encrypt → decrypt round-trip, byte-exact outside the inserted signature / replaced root; one
//! changed byte in the signed region never verifies; one changed byte of a CipherValue always
//! gives the one `decryption-failed` answer.
//!
//! Documents: random element names from a small alphabet (with umlauts), nesting, attributes,
//! text with umlauts, entity and character references, CDATA, empty-element tags, an optional
//! XML declaration, default namespace and prolog/epilog comments.
//!
//! Byte changes that XML itself defines as equivalent are not counted as mutations: a
//! whitespace byte replaced by another whitespace byte (§2.11 end-of-line handling turns a lone
//! CR into LF, §3.3.3 normalises TAB/CR/LF in attribute values to a space, and whitespace inside
//! tags carries no information). Such a change is replaced by a non-whitespace byte.

use std::sync::OnceLock;

use gateway::problem::Code;
use gateway::xml::prescan::Limits;
use gateway::xmlsec::profile::{self, DSIG_NS};
use gateway::xmlsec::verify::{self, Expect};
use gateway::xmlsec::{Identity, Policy, dom, encrypt, sign, splice};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

struct Keys {
    signer: Identity,
    recipient: Identity,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ca = gateway::pki::new_ca("xmlsec props CA", gateway::pki::KeyType::Rsa).unwrap();
        let a = gateway::pki::new_authority_cert(&ca, "psw:01003110", gateway::pki::KeyType::Rsa).unwrap();
        let b = gateway::pki::new_authority_cert(&ca, "psw:09162000", gateway::pki::KeyType::Rsa).unwrap();
        Keys {
            signer: Identity {
                key: a.key,
                cert: a.cert,
            },
            recipient: Identity {
                key: b.key,
                cert: b.cert,
            },
        }
    })
}

fn limits() -> Limits {
    Limits::default()
}

// ---------------------------------------------------------------------------------------------
// Generated documents
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Item {
    Elem(Elem),
    Text(String),
    CData(String),
}

#[derive(Debug, Clone)]
struct Elem {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    kids: Vec<Item>,
}

const NAMES: &[&str] = &["a", "b", "Straße", "x-y", "c.d", "e_1", "ÄÖÜ", "Behörde"];
const ATTR_NAMES: &[&str] = &["x", "y", "zahl", "ä", "n.m"];
const TEXT: &[&str] = &[
    "Hans", " ", "Grüße", "ß", "€", "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#228;", "&#8364;", "'", "\"", "x>y",
    "\n", "10.00", "日本", "Weiß",
];
const ATTR_TEXT: &[&str] = &[
    "1", "Grüße", "a b", "&amp;", "&lt;", "&quot;", "'", ">", "&#228;", "ß", "€",
];
const CDATA_TEXT: &[&str] = &["<b>", "&amp;", "Jürgen", " ", "]", "x"];

fn text(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens), 1..5).prop_map(|v| v.concat())
}

fn attrs() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec((prop::sample::select(ATTR_NAMES), text(ATTR_TEXT)), 0..3).prop_map(|mut v| {
        v.sort_by_key(|(n, _)| *n);
        v.dedup_by_key(|(n, _)| *n);
        v
    })
}

fn leaf_item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => text(TEXT).prop_map(Item::Text),
        1 => text(CDATA_TEXT).prop_map(Item::CData),
    ]
}

fn elem() -> impl Strategy<Value = Elem> {
    let leaf = (
        prop::sample::select(NAMES),
        attrs(),
        prop::collection::vec(leaf_item(), 0..2),
    )
        .prop_map(|(name, attrs, kids)| Elem { name, attrs, kids });
    leaf.prop_recursive(4, 32, 4, |inner| {
        (
            prop::sample::select(NAMES),
            attrs(),
            prop::collection::vec(prop_oneof![2 => inner.prop_map(Item::Elem), 1 => leaf_item()], 0..4),
        )
            .prop_map(|(name, attrs, kids)| Elem { name, attrs, kids })
    })
}

fn render_elem(e: &Elem, ns: Option<&str>, out: &mut String) {
    out.push('<');
    out.push_str(e.name);
    if let Some(ns) = ns {
        out.push_str(&format!(" xmlns=\"{ns}\""));
    }
    for (n, v) in &e.attrs {
        out.push_str(&format!(" {n}=\"{v}\""));
    }
    if e.kids.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for k in &e.kids {
        match k {
            Item::Elem(c) => render_elem(c, None, out),
            Item::Text(t) => out.push_str(t),
            Item::CData(t) => out.push_str(&format!("<![CDATA[{t}]]>")),
        }
    }
    out.push_str(&format!("</{}>", e.name));
}

/// A whole document.
fn document() -> impl Strategy<Value = String> {
    (any::<bool>(), any::<bool>(), any::<bool>(), elem()).prop_map(|(decl, ns, comments, root)| {
        let mut s = String::new();
        if decl {
            s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        }
        if comments {
            s.push_str("<!-- Prolog: Grüße -->\n<?pi data?>\n");
        }
        render_elem(&root, ns.then_some("urn:test:props"), &mut s);
        if comments {
            s.push_str("\n<!-- Epilog -->");
        }
        s.push('\n');
        s
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sign_doc(doc: &str) -> Vec<u8> {
    let k = &keys().signer;
    sign::sign_enveloped(doc.as_bytes(), k, profile::RSA_PSS_SHA256, profile::SHA256, &limits())
        .unwrap_or_else(|p| panic!("signing {doc:?}: {:?}: {}", p.code, p.detail))
}

fn verifies(xml: &[u8]) -> Result<(), gateway::problem::Problem> {
    let doc = dom::parse(xml, &limits())?;
    verify::verify(&doc, Expect::Pinned(&keys().signer.cert), &Policy::default()).map(|_| ())
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Every byte position of the root element outside the signature.
fn signed_region(signed: &[u8]) -> Vec<usize> {
    let root = splice::root(signed).unwrap();
    let sigs = splice::find(signed, Some((DSIG_NS, "Signature"))).unwrap();
    assert_eq!(sigs.len(), 1);
    let sig = sigs[0];
    (root.start..sig.start).chain(sig.end..root.end).collect()
}

/// The CipherValue texts (wrapped key, data) of an encrypted document.
fn cipher_value_ranges(xml: &str) -> Vec<(usize, usize)> {
    let open = "<xenc:CipherValue>";
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = xml[at..].find(open) {
        let start = at + i + open.len();
        let end = start + xml[start..].find("</xenc:CipherValue>").unwrap();
        out.push((start, end));
        at = end;
    }
    out
}

fn config() -> Config {
    Config {
        // 32 by default; PROPTEST_CASES=N for a longer search.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(32),
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sign_then_verify_round_trips_and_keeps_every_other_byte(doc in document()) {
        let signed = sign_doc(&doc);
        if let Err(p) = verifies(&signed) {
            panic!("{:?}: {}\n{}", p.code, p.detail, String::from_utf8_lossy(&signed));
        }
        // Removing the signature gives the input back (an empty-element root `<a/>` is expanded
        // to `<a></a>` to take the signature).
        let sig = splice::find(&signed, Some((DSIG_NS, "Signature"))).unwrap()[0];
        let mut rest = signed[..sig.start].to_vec();
        rest.extend_from_slice(&signed[sig.end..]);
        let expected = if splice::root(doc.as_bytes()).unwrap().inner.is_some() {
            doc.clone()
        } else {
            String::from_utf8(splice::append_to_root(doc.as_bytes(), b"").unwrap()).unwrap()
        };
        prop_assert_eq!(String::from_utf8(rest).unwrap(), expected);
    }

    #[test]
    fn encrypt_then_decrypt_round_trips_byte_exact(doc in document(), aes128 in any::<bool>()) {
        let k = keys();
        let cipher = if aes128 { profile::AES128_GCM } else { profile::AES256_GCM };
        let enc = encrypt::encrypt_root(doc.as_bytes(), &k.recipient.cert, cipher, &limits())
            .unwrap_or_else(|p| panic!("encrypting {doc:?}: {:?}: {}", p.code, p.detail));
        let plain = encrypt::decrypt_document(&enc, &k.recipient.key, &limits())
            .unwrap_or_else(|p| panic!("decrypting: {:?}: {}", p.code, p.detail));
        prop_assert_eq!(String::from_utf8(plain).unwrap(), doc);
    }

    #[test]
    fn one_changed_byte_in_the_signed_region_never_verifies(doc in document(), at in any::<Index>(), mask in 1u8..=255) {
        let signed = sign_doc(&doc);
        prop_assert!(verifies(&signed).is_ok(), "control: the unchanged document verifies");
        let region = signed_region(&signed);
        let pos = region[at.index(region.len())];
        let old = signed[pos];
        let mut new = old ^ mask;
        if is_ws(old) && is_ws(new) {
            new = if old == b'Z' { b'Y' } else { b'Z' };
        }
        let mut attacked = signed.clone();
        attacked[pos] = new;
        let r = verifies(&attacked);
        prop_assert!(
            r.is_err(),
            "byte {} changed {:#04x} -> {:#04x} and the document still verifies:\n{}",
            pos, old, new, String::from_utf8_lossy(&attacked)
        );
    }

    #[test]
    fn one_changed_byte_of_a_cipher_value_is_decryption_failed(
        doc in document(),
        which in 0usize..2,
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let k = keys();
        let enc = encrypt::encrypt_root(doc.as_bytes(), &k.recipient.cert, profile::AES256_GCM, &limits()).unwrap();
        prop_assert!(
            encrypt::decrypt_document(&enc, &k.recipient.key, &limits()).is_ok(),
            "control: the unchanged document decrypts"
        );
        let enc = String::from_utf8(enc).unwrap();
        let ranges = cipher_value_ranges(&enc);
        prop_assert_eq!(ranges.len(), 2);
        let (s, e) = ranges[which];
        let mut bytes = openssl::base64::decode_block(&enc[s..e]).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        let attacked = format!("{}{}{}", &enc[..s], openssl::base64::encode_block(&bytes), &enc[e..]);
        let p = encrypt::decrypt_document(attacked.as_bytes(), &k.recipient.key, &limits()).unwrap_err();
        let expected = encrypt::failed();
        prop_assert_eq!(p.code, Code::DecryptionFailed);
        prop_assert_eq!(p.detail, expected.detail);
    }
}
