//! Attacks on the XML security layer (gateway::xmlsec): signature wrapping, comment and
//! whitespace injection, algorithm downgrade, padding-oracle set-ups, forged and unusable
//! certificates, and a content signer who is not the envelope's author.
//!
//! Every test asserts the exact problem code (and a detail that names the cause) and carries a
//! positive control, so that it cannot pass with the defence removed. Most tests call the
//! library (`gateway::xmlsec`) directly; `cli_*` tests run `poststelle xml ...`.
//!
//! Signatures the signer would never make (`#id` references, extra references, many transforms)
//! are made by [`hand_sign`]: digests over libxml2 C14N (`gateway::xml::libxml::c14n`), the
//! signature value with OpenSSL (`sign::sign_bytes`).
//!
//! The test PKI ([`pki`]) is made once per test process: `network::init` with two nodes
//! (authorities X = psw:01003110 on node a, Y = psw:09162000 on node b), plus certificates made
//! here with the `openssl` crate: expired, not yet valid, revoked, RSA-2048, self-signed, and
//! one from a rogue CA; and CRLs (current, stale, from the rogue CA).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use gateway::envelope::seal;
use gateway::envelope::{self, EnvelopeHeader};
use gateway::problem::{Code, Problem};
use gateway::xml::libxml::{C14nInput, c14n};
use gateway::xml::prescan::Limits;
use gateway::xmlsec::profile::{self, DSIG_NS};
use gateway::xmlsec::verify::{self, Covered, Expect};
use gateway::xmlsec::{Identity, Policy, dom, encrypt, sign, splice};
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use poststelle_tests::pki::{self, Cert, DAY, Profile, Usage, now, rsa};

use crate::harness::bin;

// ---------------------------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------------------------

/// A certificate with its key, in memory and as PEM files.
#[derive(Debug)]
pub struct Party {
    pub cert: X509,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Party {
    pub fn identity(&self) -> Identity {
        Identity {
            key: self.key.clone(),
            cert: self.cert.clone(),
        }
    }

    fn load(dir: &Path, stem: &str) -> Party {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        Party {
            cert: X509::from_pem(&std::fs::read(&cert_path).unwrap()).unwrap(),
            key: PKey::private_key_from_pem(&std::fs::read(&key_path).unwrap()).unwrap(),
            cert_path,
            key_path,
        }
    }

    fn write(dir: &Path, stem: &str, cert: X509, key: &PKey<Private>) -> Party {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        Party {
            cert,
            key: key.clone(),
            cert_path,
            key_path,
        }
    }
}

#[derive(Debug)]
pub struct Pki {
    /// `ca.pem`: the transport (node) CA.
    pub transport_ca: PathBuf,
    /// `content-ca.pem`: the content (authority) CA.
    pub content_ca: PathBuf,
    /// Authority psw:01003110 (node a), issued by the content CA.
    pub x: Party,
    /// Authority psw:09162000 (node b), issued by the content CA.
    pub y: Party,
    pub node_a: Party,
    /// Content CA, expired yesterday.
    pub expired: Party,
    /// Content CA, valid from tomorrow.
    pub not_yet_valid: Party,
    /// Content CA, revoked by `crl`.
    pub revoked: Party,
    /// Content CA, RSA-2048.
    pub weak: Party,
    /// Self-signed, with authority X's subject name.
    pub self_signed: Party,
    /// A CA nobody trusts, and a leaf of it (with authority X's subject name).
    pub rogue_ca: PathBuf,
    pub rogue: Party,
    /// Content CA CRL, current, revoking `revoked`.
    pub crl: PathBuf,
    /// Content CA CRL whose nextUpdate has passed (revokes nothing).
    pub crl_stale: PathBuf,
    /// A current CRL of the rogue CA (none for the content CA).
    pub crl_rogue: PathBuf,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(make_pki)
}

/// A certificate for `key`: a CA (`ca`) or a signing/encryption leaf, issued by `issuer` or
/// self-signed, valid from `from` to `to` (Unix seconds).
fn make_cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    from: i64,
    to: i64,
    ca: bool,
) -> X509 {
    let mut c = Cert::new(cn)
        .org(Some("Poststelle attack tests"))
        .valid(from, to)
        .profile(if ca {
            Profile::Ca
        } else {
            Profile::Leaf(Usage::SIGN_AND_ENCRYPT)
        });
    if let Some((cert, _)) = issuer {
        c = c.issued_by(cert);
    }
    c.build(key, issuer.map_or(key, |(_, k)| k))
}

fn make_pki() -> Pki {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("xmlsec-attacks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    gateway::network::init(&dir, 2, gateway::network::Ports::Free).unwrap();
    let ca = Party::load(&dir, "content-ca");
    let x = Party::load(&dir.join("a/authorities"), "psw_01003110");
    let y = Party::load(&dir.join("b/authorities"), "psw_09162000");
    let node_a = Party::load(&dir.join("a"), "node");

    let spare = rsa(3072);
    let rogue_key = rsa(3072);
    let weak_key = rsa(2048);
    let t = now();
    let issuer = Some((&ca.cert, &ca.key));
    let leaf = |stem: &str, cn: &str, key: &PKey<Private>, from: i64, to: i64| {
        Party::write(&dir, stem, make_cert(cn, key, issuer, from, to, false), key)
    };
    let expired = leaf("expired", "expired signer", &spare, t - 30 * DAY, t - DAY);
    let not_yet_valid = leaf("not-yet-valid", "future signer", &spare, t + DAY, t + 30 * DAY);
    let revoked = leaf("revoked", "revoked signer", &spare, t - DAY, t + 30 * DAY);
    let weak = leaf("weak", "weak signer", &weak_key, t - DAY, t + 30 * DAY);
    let self_signed = Party::write(
        &dir,
        "self-signed",
        make_cert("authority psw:01003110", &spare, None, t - DAY, t + 30 * DAY, false),
        &spare,
    );
    let rogue_ca_cert = make_cert("Rogue CA", &rogue_key, None, t - DAY, t + 30 * DAY, true);
    let rogue_ca = dir.join("rogue-ca.pem");
    std::fs::write(&rogue_ca, rogue_ca_cert.to_pem().unwrap()).unwrap();
    let rogue = Party::write(
        &dir,
        "rogue",
        make_cert(
            "authority psw:01003110",
            &spare,
            Some((&rogue_ca_cert, &rogue_key)),
            t - DAY,
            t + 30 * DAY,
            false,
        ),
        &spare,
    );

    let crl = dir.join("content-ca.crl.pem");
    std::fs::write(
        &crl,
        pki::crl(&ca.cert, &ca.key, t - DAY, t + 7 * DAY, &[&revoked.cert]),
    )
    .unwrap();
    let crl_stale = dir.join("content-ca-stale.crl.pem");
    std::fs::write(&crl_stale, pki::crl(&ca.cert, &ca.key, t - 10 * DAY, t - DAY, &[])).unwrap();
    let crl_rogue = dir.join("rogue-ca.crl.pem");
    std::fs::write(
        &crl_rogue,
        pki::crl(&rogue_ca_cert, &rogue_key, t - DAY, t + 7 * DAY, &[]),
    )
    .unwrap();

    Pki {
        transport_ca: dir.join("ca.pem"),
        content_ca: dir.join("content-ca.pem"),
        x,
        y,
        node_a,
        expired,
        not_yet_valid,
        revoked,
        weak,
        self_signed,
        rogue_ca,
        rogue,
        crl,
        crl_stale,
        crl_rogue,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub fn limits() -> Limits {
    Limits::default()
}

/// Policy with the content CA as the one anchor.
pub fn content_policy() -> Policy {
    Policy {
        anchors: vec![pki().content_ca.clone()],
        ..Policy::default()
    }
}

fn transport_policy() -> Policy {
    Policy {
        anchors: vec![pki().transport_ca.clone()],
        ..Policy::default()
    }
}

/// Pinned verification without anchors (leaf rules only).
fn leaf_policy() -> Policy {
    Policy::default()
}

/// Parses and verifies; the signer's subject on success.
pub fn verify_doc(xml: &[u8], expect: Expect<'_>, policy: &Policy) -> Result<String, Problem> {
    let doc = dom::parse(xml, &limits())?;
    verify::verify(&doc, expect, policy).map(|v| gateway::xmlsec::trust::describe(&v.signer))
}

/// Asserts a refusal with `code` whose detail contains `detail`; returns the problem.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(r: Result<T, Problem>, code: Code, detail: &str) -> Problem {
    match r {
        Ok(v) => panic!("expected {code:?} ({detail}), got Ok({v:?})"),
        Err(p) => {
            assert_eq!(p.code, code, "wrong code; detail: {}", p.detail);
            assert!(
                p.detail.contains(detail),
                "detail {:?} does not contain {detail:?}",
                p.detail
            );
            p
        }
    }
}

#[track_caller]
fn ok<T>(r: Result<T, Problem>) -> T {
    match r {
        Ok(v) => v,
        Err(p) => panic!("expected success, got {:?}: {}", p.code, p.detail),
    }
}

/// Signs with our signer (enveloped, URI="", exc-c14n, RSA-PSS SHA-256).
pub fn sign_doc(xml: &str, who: &Party) -> String {
    let id = who.identity();
    let signed = ok(sign::sign_enveloped(
        xml.as_bytes(),
        &id,
        id.default_method(),
        profile::SHA256,
        &limits(),
    ));
    String::from_utf8(signed).unwrap()
}

/// One reference of a hand-made signature.
#[derive(Debug, Clone)]
pub struct Ref {
    pub uri: String,
    pub transforms: Vec<&'static str>,
    pub digest: &'static str,
}

impl Ref {
    /// `URI=""`, enveloped + exc-c14n (what our signer makes).
    pub fn whole() -> Ref {
        Ref {
            uri: String::new(),
            transforms: vec![profile::ENVELOPED, profile::EXC_C14N],
            digest: profile::SHA256,
        }
    }

    /// `URI="#id"`, exc-c14n.
    pub fn id(id: &str) -> Ref {
        Ref {
            uri: format!("#{id}"),
            transforms: vec![profile::EXC_C14N],
            digest: profile::SHA256,
        }
    }
}

const SIG_SLOT: &str = "<!--SIG-->";

/// Signs `template` by hand: the signature replaces the comment `<!--SIG-->` (comments are
/// not part of C14N without comments, so the digests computed over the template are the
/// digests of the final document minus the signature). `method` must be in the profile;
/// `key_info` is the certificate put into KeyInfo (none: no KeyInfo).
pub fn hand_sign(
    template: &str,
    refs: &[Ref],
    method: &str,
    signer: &PKey<Private>,
    key_info: Option<&X509>,
) -> String {
    assert!(template.contains(SIG_SLOT));
    let doc = dom::parse(template.as_bytes(), &limits()).unwrap();
    let root = doc.get_root_element().unwrap();
    let mut refs_xml = String::new();
    for r in refs {
        let apex = match r.uri.strip_prefix('#') {
            None => None,
            Some(id) => {
                let mut found = None;
                dom::walk(&root, &mut |n| {
                    if dom::id_of(n).iter().any(|v| v == id) {
                        found = Some(n.clone());
                    }
                });
                Some(found.unwrap_or_else(|| panic!("no element with ID {id}")))
            }
        };
        let octets = c14n(&C14nInput {
            doc: &doc,
            apex: apex.as_ref(),
            exclude: None,
            exclusive: r.transforms.contains(&profile::EXC_C14N),
            inclusive_prefixes: &[],
        })
        .unwrap();
        let md = profile::digest_method(r.digest).unwrap_or(MessageDigest::sha256());
        let dv = openssl::base64::encode_block(&hash(md, &octets).unwrap());
        refs_xml.push_str(&format!("<ds:Reference URI=\"{}\">", r.uri));
        if !r.transforms.is_empty() {
            refs_xml.push_str("<ds:Transforms>");
            for t in &r.transforms {
                refs_xml.push_str(&format!("<ds:Transform Algorithm=\"{t}\"/>"));
            }
            refs_xml.push_str("</ds:Transforms>");
        }
        refs_xml.push_str(&format!(
            "<ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{dv}</ds:DigestValue></ds:Reference>",
            r.digest
        ));
    }
    let si = format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{}\"/><ds:SignatureMethod Algorithm=\"{method}\"/>{refs_xml}</ds:SignedInfo>",
        profile::EXC_C14N
    );
    // SignedInfo uses only the ds prefix: its exclusive C14N is the same stand-alone.
    let wrapped = format!("<ds:Signature xmlns:ds=\"{DSIG_NS}\">{si}</ds:Signature>");
    let sdoc = dom::parse(wrapped.as_bytes(), &limits()).unwrap();
    let sroot = sdoc.get_root_element().unwrap();
    let si_node = dom::one_child(&sroot, DSIG_NS, "SignedInfo").unwrap();
    let canonical = c14n(&C14nInput {
        doc: &sdoc,
        apex: Some(&si_node),
        exclude: None,
        exclusive: true,
        inclusive_prefixes: &[],
    })
    .unwrap();
    let value = sign::sign_bytes(&profile::signature_method(method).unwrap(), signer, &canonical).unwrap();
    let ki = key_info.map_or(String::new(), |c| {
        format!(
            "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
            openssl::base64::encode_block(&c.to_der().unwrap())
        )
    });
    let sig = format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{si}<ds:SignatureValue>{}</ds:SignatureValue>{ki}</ds:Signature>",
        openssl::base64::encode_block(&value)
    );
    template.replacen(SIG_SLOT, &sig, 1)
}

/// Replaces exactly one occurrence of `from`.
#[track_caller]
pub fn replace_once(s: &str, from: &str, to: &str) -> String {
    assert_eq!(s.matches(from).count(), 1, "{from:?} must occur exactly once");
    s.replacen(from, to, 1)
}

/// The text between the `n`th `open` and the following `close`.
#[track_caller]
fn between(s: &str, open: &str, close: &str, n: usize) -> (usize, usize) {
    let mut at = 0;
    for _ in 0..n {
        at = s[at..].find(open).unwrap() + at + open.len();
    }
    let start = s[at..].find(open).unwrap() + at + open.len();
    let end = s[start..].find(close).unwrap() + start;
    (start, end)
}

fn header() -> EnvelopeHeader {
    EnvelopeHeader {
        message_id: "0190a5e4-0000-7000-8000-000000000001".into(),
        xoev_uuid: "6f0c5a0e-1b7e-4d0e-9c1f-1a2b3c4d5e6f".into(),
        sender_node: "a".into(),
        sender: "psw:01003110".into(),
        recipient: "psw:09162000".into(),
        message_type: "xumzug.test.0001".into(),
        created: "2025-06-01T10:00:00Z".into(),
    }
}

const MESSAGE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<msg xmlns=\"urn:test:msg\"><Person>Grüße an Jürgen Weiß &amp; Co.</Person><Betrag>10.00</Betrag></msg>\n";

/// A sealed envelope: content signed by X, encrypted for Y, envelope signed by node a.
fn sealed() -> Vec<u8> {
    let p = pki();
    ok(seal::seal(
        &header(),
        MESSAGE.as_bytes(),
        &[],
        &p.x.identity(),
        &p.y.cert,
        &p.node_a.identity(),
        &limits(),
    ))
}

/// An envelope (signed by node a) around an arbitrary, already signed `SignedContent`,
/// encrypted for Y.
fn envelope_around(signed_content: &[u8]) -> Vec<u8> {
    let p = pki();
    let body = ok(encrypt::encrypted_data(signed_content, &p.y.cert, profile::AES256_GCM));
    let env = envelope::build_with_body(&header(), &body);
    ok(seal::sign_own(&env, &p.node_a.identity(), &limits()))
}

fn open_as_y(env: &[u8], author: &X509) -> Result<Vec<u8>, Problem> {
    seal::open(env, &pki().y.key, author, &content_policy(), &limits()).map(|o| o.content)
}

fn signed_content_template(content_attrs: &str, slot_inside: bool) -> String {
    let b64 = openssl::base64::encode_block(MESSAGE.as_bytes());
    if slot_inside {
        format!(
            "<pst:SignedContent xmlns:pst=\"{}\"><pst:Content{content_attrs} mediaType=\"application/xml\">{b64}</pst:Content><pst:Extra>{SIG_SLOT}</pst:Extra></pst:SignedContent>",
            envelope::NS
        )
    } else {
        format!(
            "<pst:SignedContent xmlns:pst=\"{}\"><pst:Content{content_attrs} mediaType=\"application/xml\">{b64}</pst:Content>{SIG_SLOT}</pst:SignedContent>",
            envelope::NS
        )
    }
}

const DIGEST_WHOLE: &str = "the digest of reference \"\" does not match";
const NOT_WHOLE: &str = "the signature must be enveloped in the root and cover the whole document";

// ---------------------------------------------------------------------------------------------
// Signature wrapping
// ---------------------------------------------------------------------------------------------

const ORDER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<Bestellung xmlns=\"urn:test:order\"><Auftrag Id=\"x\"><Betrag>10.00</Betrag><Empfänger>Stadtkasse Köln</Empfänger></Auftrag><!--SIG--></Bestellung>\n";
const GENUINE: &str = "<Auftrag Id=\"x\"><Betrag>10.00</Betrag><Empfänger>Stadtkasse Köln</Empfänger></Auftrag>";
const FORGED: &str = "<Auftrag><Betrag>999999.00</Betrag><Empfänger>Mallory</Empfänger></Auftrag>";

/// The order signed by X with one `#x` reference (signature: last child of the root).
fn signed_order() -> String {
    let p = pki();
    hand_sign(
        ORDER,
        &[Ref::id("x")],
        profile::RSA_PSS_SHA256,
        &p.x.key,
        Some(&p.x.cert),
    )
}

/// Verifies and returns (text of the covered element, name of its parent, whether it is the
/// first element child of the root — what a naive reader would take).
fn covered_element(xml: &str) -> Result<(String, String, bool), Problem> {
    let p = pki();
    let doc = dom::parse(xml.as_bytes(), &limits())?;
    let v = verify::verify(&doc, Expect::Pinned(&p.x.cert), &content_policy())?;
    assert_eq!(v.covered.len(), 1);
    let Covered::Element(n) = &v.covered[0] else {
        panic!("expected an element reference")
    };
    let root = doc.get_root_element().unwrap();
    let first = root.get_first_element_child().unwrap();
    Ok((
        n.get_content(),
        n.get_parent().unwrap().get_name(),
        first.node_ptr() == n.node_ptr(),
    ))
}

#[test]
fn wrapping_moved_signed_element_the_verifier_names_the_genuine_node_and_the_pipeline_refuses() {
    let p = pki();
    let signed = signed_order();
    // Positive control: the genuine document verifies; the covered node is the root's first child.
    let (text, parent, first) = ok(covered_element(&signed));
    assert_eq!(text, "10.00Stadtkasse Köln");
    assert_eq!(parent, "Bestellung");
    assert!(first);

    // (a1) The genuine element moved into a wrapper, a forged one put in its place.
    let wrapped = replace_once(&signed, GENUINE, &format!("{FORGED}<Hülle>{GENUINE}</Hülle>"));
    let (text, parent, first) = ok(covered_element(&wrapped));
    assert_eq!(text, "10.00Stadtkasse Köln", "the verifier must report the signed node");
    assert_eq!(parent, "Hülle");
    assert!(!first, "the node a naive reader takes is not the signed one");

    // (a2) The genuine element hidden in a ds:Object of the signature (its namespace made explicit).
    let moved = GENUINE.replace("<Auftrag Id", "<Auftrag xmlns=\"urn:test:order\" Id");
    let hidden = replace_once(&signed, GENUINE, FORGED);
    let hidden = replace_once(
        &hidden,
        "</ds:Signature>",
        &format!("<ds:Object>{moved}</ds:Object></ds:Signature>"),
    );
    let (text, parent, first) = ok(covered_element(&hidden));
    assert_eq!(text, "10.00Stadtkasse Köln");
    assert_eq!(parent, "Object");
    assert!(!first);

    // Where a whole-document signature is required (envelopes, receipts, signed content), an
    // `#id` signature is refused outright, wrapped or not.
    for doc in [&signed, &wrapped, &hidden] {
        refused(
            seal::verify_node_signed(doc.as_bytes(), &p.x.cert, &content_policy(), &limits()),
            Code::SignatureInvalid,
            NOT_WHOLE,
        );
    }

    // The same move under a URI="" signature breaks the digest.
    let whole = sign_doc(&ORDER.replace(SIG_SLOT, ""), &p.x);
    ok(verify_doc(
        whole.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    let moved_whole = replace_once(&whole, GENUINE, &format!("{FORGED}<Hülle>{GENUINE}</Hülle>"));
    refused(
        verify_doc(moved_whole.as_bytes(), Expect::Pinned(&p.x.cert), &content_policy()),
        Code::SignatureInvalid,
        DIGEST_WHOLE,
    );
}

#[test]
fn wrapping_duplicated_id_is_refused() {
    let p = pki();
    let signed = signed_order();
    ok(verify_doc(
        signed.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    let forged_x = FORGED.replace("<Auftrag>", "<Auftrag Id=\"x\">");
    let attacks = [
        // forged copy with the same Id before the genuine one
        replace_once(&signed, GENUINE, &format!("{forged_x}{GENUINE}")),
        // forged in place, genuine moved into a wrapper, both Id="x"
        replace_once(&signed, GENUINE, &format!("{forged_x}<Hülle>{GENUINE}</Hülle>")),
        // forged copy after the signature
        replace_once(&signed, "</Bestellung>", &format!("{forged_x}</Bestellung>")),
        // forged copy inside a ds:Object of the signature
        replace_once(
            &signed,
            "</ds:Signature>",
            &format!("<ds:Object>{forged_x}</ds:Object></ds:Signature>"),
        ),
        // the same value in another ID attribute (ID, id, xml:id)
        replace_once(
            &signed,
            GENUINE,
            &format!("{}{GENUINE}", FORGED.replace("<Auftrag>", "<Auftrag ID=\"x\">")),
        ),
        replace_once(
            &signed,
            GENUINE,
            &format!("{}{GENUINE}", FORGED.replace("<Auftrag>", "<Auftrag id=\"x\">")),
        ),
        replace_once(
            &signed,
            GENUINE,
            &format!("{}{GENUINE}", FORGED.replace("<Auftrag>", "<Auftrag xml:id=\"x\">")),
        ),
    ];
    for (i, a) in attacks.iter().enumerate() {
        let p = refused(
            verify_doc(a.as_bytes(), Expect::Pinned(&pki().x.cert), &content_policy()),
            Code::SignatureInvalid,
            "occurs more than once",
        );
        assert_eq!(p.detail, "the ID \"x\" occurs more than once", "attack {i}");
    }
    // A duplicate is refused even with the anchored (KeyInfo) path, and before the key is used.
    refused(
        verify_doc(attacks[0].as_bytes(), Expect::Anchored, &content_policy()),
        Code::SignatureInvalid,
        "occurs more than once",
    );
}

#[test]
fn wrapping_re_ided_signed_element_is_refused() {
    let p = pki();
    let signed = signed_order();
    ok(verify_doc(
        signed.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    let pinned = || Expect::Pinned(&pki().x.cert);
    // The signed element renamed: the reference dangles.
    let renamed = replace_once(&signed, "<Auftrag Id=\"x\">", "<Auftrag Id=\"y\">");
    refused(
        verify_doc(renamed.as_bytes(), pinned(), &content_policy()),
        Code::SignatureInvalid,
        "no element has the ID \"x\"",
    );
    // Renamed, and the forged element takes its Id: digest mismatch.
    let swapped = replace_once(
        &signed,
        GENUINE,
        &format!(
            "{}{}",
            FORGED.replace("<Auftrag>", "<Auftrag Id=\"x\">"),
            GENUINE.replace("Id=\"x\"", "Id=\"y\"")
        ),
    );
    refused(
        verify_doc(swapped.as_bytes(), pinned(), &content_policy()),
        Code::SignatureInvalid,
        "the digest of reference \"#x\" does not match",
    );
    // The same value in another ID attribute name: found, but the attribute is signed.
    for attr in ["ID", "id", "xml:id"] {
        let other = replace_once(&signed, "<Auftrag Id=\"x\">", &format!("<Auftrag {attr}=\"x\">"));
        refused(
            verify_doc(other.as_bytes(), pinned(), &content_policy()),
            Code::SignatureInvalid,
            "the digest of reference \"#x\" does not match",
        );
    }
}

/// Byte offsets just after every `>` at a position in `range` of `s`.
fn after_tags(s: &str, range: std::ops::Range<usize>) -> Vec<usize> {
    s.bytes()
        .enumerate()
        .filter(|(i, b)| *b == b'>' && range.contains(i))
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn envelope_extra_unsigned_content_breaks_the_node_signature() {
    let p = pki();
    let env = String::from_utf8(sealed()).unwrap();
    let check = |xml: &str| seal::verify_node_signed(xml.as_bytes(), &p.node_a.cert, &transport_policy(), &limits());
    // Positive control.
    ok(check(&env));
    assert_eq!(ok(open_as_y(env.as_bytes(), &p.x.cert)), MESSAGE.as_bytes());

    // A second pst:Body, before or after the signed one.
    let body_start = env.find("<pst:Body>").unwrap();
    let body_end = env.find("</pst:Body>").unwrap() + "</pst:Body>".len();
    let second = "<pst:Body><pst:Note>forged</pst:Note></pst:Body>";
    for at in [body_start, body_end] {
        let attacked = format!("{}{second}{}", &env[..at], &env[at..]);
        refused(check(&attacked), Code::SignatureInvalid, DIGEST_WHOLE);
        // and open() will not pick one of two bodies either
        refused(
            open_as_y(attacked.as_bytes(), &p.x.cert),
            Code::EnvelopeInvalid,
            "more than one Body",
        );
    }
    // An extra element after the signature, an extra attribute, an extra header field.
    for attacked in [
        replace_once(&env, "</ds:Signature>", "</ds:Signature><pst:Extra/>"),
        replace_once(&env, " version=\"1.0\">", " version=\"1.0\" priority=\"high\">"),
        replace_once(
            &env,
            "</pst:Header>",
            "<pst:Recipient>psw:05315000</pst:Recipient></pst:Header>",
        ),
    ] {
        refused(check(&attacked), Code::SignatureInvalid, DIGEST_WHOLE);
    }

    // URI="": any insertion anywhere in the signed region breaks it — an element or a blank
    // after every tag outside the signature (inside the root), and in SignedInfo.
    let root = splice::root(env.as_bytes()).unwrap();
    let sig = splice::find(env.as_bytes(), Some((DSIG_NS, "Signature"))).unwrap()[0];
    let (si_start, si_end) = (
        env.find("<ds:SignedInfo>").unwrap(),
        env.find("</ds:SignedInfo>").unwrap(),
    );
    // (after the root's start tag up to the signature, the signature's end tag, and up to but
    // not after the root's end tag)
    let mut outside: Vec<usize> = after_tags(&env, root.start..sig.start);
    outside.extend(after_tags(&env, sig.end - 1..root.end - 1));
    assert!(outside.len() > 30, "{} insertion points", outside.len());
    for &at in &outside {
        for insert in ["<pst:Extra/>", " "] {
            let attacked = format!("{}{insert}{}", &env[..at], &env[at..]);
            refused(check(&attacked), Code::SignatureInvalid, DIGEST_WHOLE);
        }
    }
    let inside_si = after_tags(&env, si_start..si_end);
    assert!(inside_si.len() >= 8);
    for &at in &inside_si {
        let attacked = format!("{} {}", &env[..at], &env[at..]);
        refused(
            check(&attacked),
            Code::SignatureInvalid,
            "the signature value does not match SignedInfo",
        );
    }
}

#[test]
fn envelope_forged_body_hidden_in_the_signature_is_never_read() {
    // The children of ds:Signature other than SignedInfo are outside the signature by design
    // (enveloped-signature transform). A forged body hidden there verifies, but open() reads
    // only the root's own pst:Body, which is signed.
    let p = pki();
    let env = String::from_utf8(sealed()).unwrap();
    let other = String::from_utf8(ok(seal::seal(
        &header(),
        b"<forged/>",
        &[],
        &p.x.identity(),
        &p.y.cert,
        &p.node_a.identity(),
        &limits(),
    )))
    .unwrap();
    let forged_body = &other[other.find("<pst:Body>").unwrap()..other.find("</pst:Body>").unwrap() + 11];
    let forged_body = forged_body.replace("<pst:Body>", &format!("<pst:Body xmlns:pst=\"{}\">", envelope::NS));
    let attacked = replace_once(
        &env,
        "</ds:KeyInfo></ds:Signature></pst:Envelope>",
        &format!("</ds:KeyInfo><ds:Object>{forged_body}</ds:Object></ds:Signature></pst:Envelope>"),
    );
    ok(seal::verify_node_signed(
        attacked.as_bytes(),
        &p.node_a.cert,
        &transport_policy(),
        &limits(),
    ));
    assert_eq!(ok(open_as_y(attacked.as_bytes(), &p.x.cert)), MESSAGE.as_bytes());
    // Positive control: the forged body is a working body of its own.
    assert_eq!(ok(open_as_y(other.as_bytes(), &p.x.cert)), b"<forged/>");
}

#[test]
fn second_signature_anywhere_is_refused() {
    let p = pki();
    let doc = "<?xml version=\"1.0\"?>\n<r><a><b>eins</b></a><c>zwei</c></r>\n";
    let signed = sign_doc(doc, &p.x);
    ok(verify_doc(
        signed.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    let sig = &signed[signed.find("<ds:Signature").unwrap()..signed.find("</ds:Signature>").unwrap() + 15];
    let empty = format!("<ds:Signature xmlns:ds=\"{DSIG_NS}\"/>");
    let default_ns = format!("<Signature xmlns=\"{DSIG_NS}\"/>");
    let attacks = [
        replace_once(&signed, "<r>", &format!("<r>{sig}")),
        replace_once(&signed, "<b>", &format!("<b>{empty}")),
        replace_once(&signed, "</c>", &format!("{default_ns}</c>")),
        replace_once(
            &signed,
            "</ds:KeyInfo>",
            &format!("</ds:KeyInfo><ds:Object>{empty}</ds:Object>"),
        ),
        replace_once(&signed, "<ds:X509Data>", &format!("{empty}<ds:X509Data>")),
    ];
    for a in &attacks {
        let p = refused(
            verify_doc(a.as_bytes(), Expect::Pinned(&pki().x.cert), &content_policy()),
            Code::SignatureInvalid,
            "exactly one",
        );
        assert_eq!(
            p.detail,
            "the document carries 2 signatures; the profile allows exactly one"
        );
    }
    // Also through the envelope pipeline.
    let env = String::from_utf8(sealed()).unwrap();
    let twice = replace_once(&env, "<pst:Header>", &format!("<pst:Header>{empty}"));
    refused(
        seal::verify_node_signed(twice.as_bytes(), &p.node_a.cert, &transport_policy(), &limits()),
        Code::SignatureInvalid,
        "exactly one",
    );
}

#[test]
fn open_refuses_content_signature_that_does_not_cover_the_whole_document() {
    let p = pki();
    // Positive control: a hand-made URI="" content signature opens.
    let whole = hand_sign(
        &signed_content_template("", false),
        &[Ref::whole()],
        profile::RSA_PSS_SHA256,
        &p.x.key,
        Some(&p.x.cert),
    );
    assert_eq!(
        ok(open_as_y(&envelope_around(whole.as_bytes()), &p.x.cert)),
        MESSAGE.as_bytes()
    );

    // (f) The signature covers only the pst:Content child (#c).
    let by_id = hand_sign(
        &signed_content_template(" Id=\"c\"", false),
        &[Ref::id("c")],
        profile::RSA_PSS_SHA256,
        &p.x.key,
        Some(&p.x.cert),
    );
    ok(verify_doc(
        by_id.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    refused(
        open_as_y(&envelope_around(by_id.as_bytes()), &p.x.cert),
        Code::SignatureInvalid,
        NOT_WHOLE,
    );

    // A URI="" signature that is not a child of the root.
    let nested = hand_sign(
        &signed_content_template("", true),
        &[Ref::whole()],
        profile::RSA_PSS_SHA256,
        &p.x.key,
        Some(&p.x.cert),
    );
    ok(verify_doc(
        nested.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    refused(
        open_as_y(&envelope_around(nested.as_bytes()), &p.x.cert),
        Code::SignatureInvalid,
        NOT_WHOLE,
    );

    // Same for the node signature of an envelope.
    let env = envelope::build_with_body(&header(), "<pst:Note/>");
    let env = String::from_utf8(env)
        .unwrap()
        .replace("<pst:Header>", "<pst:Header Id=\"h\">");
    let env = replace_once(
        &env,
        "</pst:Body></pst:Envelope>",
        &format!("</pst:Body>{SIG_SLOT}</pst:Envelope>"),
    );
    let header_only = hand_sign(
        &env,
        &[Ref::id("h")],
        profile::RSA_PSS_SHA256,
        &p.node_a.key,
        Some(&p.node_a.cert),
    );
    ok(verify_doc(
        header_only.as_bytes(),
        Expect::Pinned(&p.node_a.cert),
        &transport_policy(),
    ));
    refused(
        seal::verify_node_signed(header_only.as_bytes(), &p.node_a.cert, &transport_policy(), &limits()),
        Code::SignatureInvalid,
        NOT_WHOLE,
    );
}

// ---------------------------------------------------------------------------------------------
// Comment and whitespace injection
// ---------------------------------------------------------------------------------------------

fn canonical(xml: &str) -> Vec<u8> {
    let doc = dom::parse(xml.as_bytes(), &limits()).unwrap();
    c14n(&C14nInput {
        doc: &doc,
        apex: None,
        exclude: None,
        exclusive: true,
        inclusive_prefixes: &[],
    })
    .unwrap()
}

#[test]
fn comment_injection_splits_text_but_the_verified_canonical_text_is_what_is_read() {
    let p = pki();
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<r><Name>Hans Müller</Name><Rolle>admin</Rolle></r>\n";
    let signed = sign_doc(doc, &p.x);
    let injected = replace_once(&signed, "Hans Müller", "Hans<!-- injected --> Müller");
    let injected = replace_once(&injected, "admin", "ad<!---->min");
    // C14N without comments: the comment is not signed data, so the signature holds ...
    ok(verify_doc(
        injected.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    assert_eq!(canonical(&injected), canonical(&signed));
    // ... while the text is split: a reader of the first text node would see "Hans" / "ad".
    let d = dom::parse(injected.as_bytes(), &limits()).unwrap();
    let name = d.get_root_element().unwrap().get_first_element_child().unwrap();
    assert_eq!(name.get_first_child().unwrap().get_content(), "Hans");
    assert_eq!(
        name.get_content(),
        "Hans Müller",
        "the element's whole text is the signed text"
    );

    // The envelope pipeline reads the whole signed text: a comment in the middle of the
    // base64 content of a SignedContent changes nothing in what open() returns.
    let sc = String::from_utf8(ok(seal::sign_own(
        signed_content_template("", false).replace(SIG_SLOT, "").as_bytes(),
        &p.x.identity(),
        &limits(),
    )))
    .unwrap();
    let (s, e) = between(&sc, "mediaType=\"application/xml\">", "</pst:Content>", 0);
    let mid = s + (e - s) / 2;
    let commented = format!("{}<!--x-->{}", &sc[..mid], &sc[mid..]);
    let opened = ok(open_as_y(&envelope_around(commented.as_bytes()), &p.x.cert));
    assert_eq!(
        opened,
        MESSAGE.as_bytes(),
        "open() must return the exact signed content"
    );
    // Control: the comment did split the signed text (a first-text-node reader gets half).
    let d = dom::parse(commented.as_bytes(), &limits()).unwrap();
    let content = d.get_root_element().unwrap().get_first_element_child().unwrap();
    assert_eq!(content.get_first_child().unwrap().get_content(), &sc[s..mid]);
    assert_eq!(dom::compact_text(&content), &sc[s..e]);
}

#[test]
fn whitespace_injection_into_signed_text_breaks_the_digest() {
    let p = pki();
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<r><Name>Hans Müller</Name><Betrag>10.00</Betrag></r>\n";
    let signed = sign_doc(doc, &p.x);
    ok(verify_doc(
        signed.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    for attacked in [
        replace_once(&signed, "Hans Müller", "Hans  Müller"),
        replace_once(&signed, "Hans Müller", "Hans\tMüller"),
        replace_once(&signed, "10.00", "10.00 "),
        replace_once(&signed, "10.00", "\n10.00"),
        replace_once(&signed, "<Betrag>", " <Betrag>"),
        replace_once(&signed, "</r>", "\n</r>"),
    ] {
        refused(
            verify_doc(attacked.as_bytes(), Expect::Pinned(&p.x.cert), &content_policy()),
            Code::SignatureInvalid,
            DIGEST_WHOLE,
        );
    }
    // Whitespace in the base64 of a SignedContent would decode to the same bytes, but it is
    // signed text: refused.
    let sc = String::from_utf8(ok(seal::sign_own(
        signed_content_template("", false).replace(SIG_SLOT, "").as_bytes(),
        &p.x.identity(),
        &limits(),
    )))
    .unwrap();
    assert_eq!(
        ok(open_as_y(&envelope_around(sc.as_bytes()), &p.x.cert)),
        MESSAGE.as_bytes()
    );
    let (s, e) = between(&sc, "mediaType=\"application/xml\">", "</pst:Content>", 0);
    for ws in [" ", "\n", "\t", "\r\n"] {
        let mid = s + (e - s) / 2;
        let attacked = format!("{}{ws}{}", &sc[..mid], &sc[mid..]);
        refused(
            open_as_y(&envelope_around(attacked.as_bytes()), &p.x.cert),
            Code::SignatureInvalid,
            DIGEST_WHOLE,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithm downgrade (checked before any cryptography)
// ---------------------------------------------------------------------------------------------

const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const HMAC_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#hmac-sha1";
const DSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#dsa-sha1";
const ECDSA_SHA1: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1";
const RSA_MD5: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-md5";
const DIGEST_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const DIGEST_MD5: &str = "http://www.w3.org/2001/04/xmldsig-more#md5";
const DIGEST_SHA224: &str = "http://www.w3.org/2001/04/xmldsig-more#sha224";
const XSLT: &str = "http://www.w3.org/TR/1999/REC-xslt-19991116";
const XPATH: &str = "http://www.w3.org/TR/1999/REC-xpath-19991116";
const XPATH2: &str = "http://www.w3.org/2002/06/xmldsig-filter2";
const BASE64_T: &str = "http://www.w3.org/2000/09/xmldsig#base64";
const C14N_COMMENTS: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments";
const EXC_C14N_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
const C14N_11: &str = "http://www.w3.org/2006/12/xml-c14n11";

fn a_signed_doc() -> String {
    sign_doc(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Antrag><Name>Jürgen</Name><Betrag>10.00</Betrag></Antrag>\n",
        &pki().x,
    )
}

/// The signature value replaced by garbage, and the KeyInfo certificate by garbage too.
fn garbage_crypto(signed: &str) -> Vec<String> {
    let (s, e) = between(signed, "<ds:SignatureValue>", "</ds:SignatureValue>", 0);
    let bad_value = format!("{}AAAA{}", &signed[..s], &signed[e..]);
    let (s, e) = between(&bad_value, "<ds:X509Certificate>", "</ds:X509Certificate>", 0);
    let bad_cert = format!("{}AAAA{}", &bad_value[..s], &bad_value[e..]);
    let (s, e) = between(signed, "<ds:DigestValue>", "</ds:DigestValue>", 0);
    let bad_digest = format!("{}AAAA{}", &signed[..s], &signed[e..]);
    vec![signed.to_owned(), bad_value, bad_cert, bad_digest]
}

/// Asserts algorithm-not-allowed for the document, for every garbage variant of its
/// cryptographic values, pinned and anchored.
#[track_caller]
fn not_allowed_before_crypto(attacked: &str, detail: &str) {
    for variant in garbage_crypto(attacked) {
        for expect in [Expect::Pinned(&pki().x.cert), Expect::Anchored] {
            refused(
                verify_doc(variant.as_bytes(), expect, &content_policy()),
                Code::AlgorithmNotAllowed,
                detail,
            );
        }
    }
}

#[test]
fn downgraded_signature_method_is_refused_before_any_cryptography() {
    let p = pki();
    let signed = a_signed_doc();
    // Positive controls: the document verifies; garbage values are caught by cryptography.
    ok(verify_doc(
        signed.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    let g = garbage_crypto(&signed);
    refused(
        verify_doc(g[1].as_bytes(), Expect::Pinned(&p.x.cert), &content_policy()),
        Code::SignatureInvalid,
        "signature value does not match",
    );
    refused(
        verify_doc(g[2].as_bytes(), Expect::Anchored, &content_policy()),
        Code::CertificateInvalid,
        "X509Certificate is unreadable",
    );
    refused(
        verify_doc(g[3].as_bytes(), Expect::Pinned(&p.x.cert), &content_policy()),
        Code::SignatureInvalid,
        "signature value does not match",
    );

    for method in [RSA_SHA1, HMAC_SHA1, DSA_SHA1, ECDSA_SHA1, RSA_MD5, "", "urn:unknown"] {
        let attacked = replace_once(&signed, profile::RSA_PSS_SHA256, method);
        not_allowed_before_crypto(&attacked, &format!("signature method {method:?}"));
    }
    // HMACOutputLength (truncation attack) under an allowed method: a parameter → refused.
    let truncated = replace_once(
        &signed,
        &format!("<ds:SignatureMethod Algorithm=\"{}\"/>", profile::RSA_PSS_SHA256),
        &format!(
            "<ds:SignatureMethod Algorithm=\"{}\"><ds:HMACOutputLength>0</ds:HMACOutputLength></ds:SignatureMethod>",
            profile::RSA_PSS_SHA256
        ),
    );
    not_allowed_before_crypto(&truncated, "signature method parameter");
}

#[test]
fn downgraded_digest_method_is_refused_before_any_cryptography() {
    let signed = a_signed_doc();
    for digest in [DIGEST_SHA1, DIGEST_MD5, DIGEST_SHA224, ""] {
        let attacked = replace_once(
            &signed,
            &format!("DigestMethod Algorithm=\"{}\"", profile::SHA256),
            &format!("DigestMethod Algorithm=\"{digest}\""),
        );
        not_allowed_before_crypto(&attacked, &format!("digest method {digest:?}"));
    }
}

#[test]
fn dangerous_transforms_canonicalizations_and_uris_are_refused_before_any_cryptography() {
    let signed = a_signed_doc();
    let env_t = format!("<ds:Transform Algorithm=\"{}\"/>", profile::ENVELOPED);
    let c14n_t = format!("<ds:Transform Algorithm=\"{}\"/>", profile::EXC_C14N);
    for t in [
        XSLT,
        XPATH,
        XPATH2,
        BASE64_T,
        C14N_COMMENTS,
        EXC_C14N_COMMENTS,
        C14N_11,
        "urn:unknown",
    ] {
        // in front of the allowed ones, with a (harmless) parameter as an attacker would
        let attacked = replace_once(
            &signed,
            &env_t,
            &format!(
                "<ds:Transform Algorithm=\"{t}\"><ds:XPath>not(ancestor-or-self::ds:Signature)</ds:XPath></ds:Transform>{env_t}"
            ),
        );
        not_allowed_before_crypto(&attacked, &format!("transform {t:?}"));
        // instead of exc-c14n
        let replaced = replace_once(&signed, &c14n_t, &format!("<ds:Transform Algorithm=\"{t}\"/>"));
        not_allowed_before_crypto(&replaced, &format!("transform {t:?}"));
    }
    // Anything after the canonicalization.
    let after = replace_once(
        &signed,
        &format!("{c14n_t}</ds:Transforms>"),
        &format!("{c14n_t}{env_t}</ds:Transforms>"),
    );
    not_allowed_before_crypto(&after, "transform after canonicalization");
    // An InclusiveNamespaces-like parameter that is something else (an XPath) on exc-c14n.
    let param = replace_once(
        &signed,
        &c14n_t,
        &format!(
            "<ds:Transform Algorithm=\"{}\"><ds:XPath>1</ds:XPath></ds:Transform>",
            profile::EXC_C14N
        ),
    );
    not_allowed_before_crypto(&param, "transform");
    // SignedInfo canonicalization with comments, or 1.1.
    for c in [C14N_COMMENTS, EXC_C14N_COMMENTS, C14N_11, XSLT] {
        let attacked = replace_once(
            &signed,
            &format!("<ds:CanonicalizationMethod Algorithm=\"{}\"/>", profile::EXC_C14N),
            &format!("<ds:CanonicalizationMethod Algorithm=\"{c}\"/>"),
        );
        not_allowed_before_crypto(&attacked, &format!("canonicalization method {c:?}"));
    }
    // References to anything but the document or a same-document ID.
    for uri in [
        "http://evil.example/doc.xml",
        "file:///etc/passwd",
        "#xpointer(/)",
        "#xpointer(id('x'))",
        "doc.xml#x",
        "#",
    ] {
        let attacked = replace_once(
            &signed,
            "<ds:Reference URI=\"\">",
            &format!("<ds:Reference URI=\"{uri}\">"),
        );
        not_allowed_before_crypto(&attacked, &format!("reference URI {uri:?}"));
    }
    let no_uri = replace_once(&signed, "<ds:Reference URI=\"\">", "<ds:Reference>");
    not_allowed_before_crypto(&no_uri, "reference without URI");
}

#[test]
fn retrieval_method_in_key_info_is_refused_before_any_cryptography() {
    let signed = a_signed_doc();
    for rm in [
        "<ds:RetrievalMethod URI=\"http://evil.example/cert\" Type=\"http://www.w3.org/2000/09/xmldsig#rawX509Certificate\"/>",
        "<ds:RetrievalMethod URI=\"#k\"/>",
    ] {
        let first = replace_once(&signed, "<ds:KeyInfo>", &format!("<ds:KeyInfo>{rm}"));
        not_allowed_before_crypto(&first, "KeyInfo element \"RetrievalMethod\"");
    }
    // Positive control: other KeyInfo children (KeyName) are ignored.
    let named = replace_once(&signed, "<ds:KeyInfo>", "<ds:KeyInfo><ds:KeyName>x</ds:KeyName>");
    ok(verify_doc(
        named.as_bytes(),
        Expect::Pinned(&pki().x.cert),
        &content_policy(),
    ));
}

#[test]
fn too_many_transforms_or_references_are_refused_before_any_cryptography() {
    let p = pki();
    let doc = "<?xml version=\"1.0\"?>\n<r><a Id=\"a\">1</a><!--SIG--></r>\n";
    let sign = |refs: &[Ref]| hand_sign(doc, refs, profile::RSA_PSS_SHA256, &p.x.key, Some(&p.x.cert));
    // 5 transforms (4× enveloped + exc-c14n) are allowed and verify ...
    let mut five = Ref::whole();
    five.transforms = vec![profile::ENVELOPED; 4];
    five.transforms.push(profile::EXC_C14N);
    let signed5 = sign(std::slice::from_ref(&five));
    ok(verify_doc(
        signed5.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    // ... 6 are not.
    let mut six = five.clone();
    six.transforms.insert(0, profile::ENVELOPED);
    not_allowed_before_crypto(&sign(&[six]), "number of transforms \"6\"");

    // 30 references verify, 31 do not.
    let refs: Vec<Ref> = (0..30)
        .map(|i| if i % 2 == 0 { Ref::whole() } else { Ref::id("a") })
        .collect();
    let signed30 = sign(&refs);
    ok(verify_doc(
        signed30.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    let mut refs31 = refs.clone();
    refs31.push(Ref::whole());
    not_allowed_before_crypto(&sign(&refs31), "number of references \"31\"");
    // And far more (a DoS attempt) is refused the same way.
    let many: Vec<Ref> = (0..200).map(|_| Ref::id("a")).collect();
    not_allowed_before_crypto(&sign(&many), "number of references \"200\"");
}

// ---------------------------------------------------------------------------------------------
// Decryption: padding-oracle set-ups
// ---------------------------------------------------------------------------------------------

const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
const TRIPLEDES_CBC: &str = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc";
const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";
const KW_AES256: &str = "http://www.w3.org/2001/04/xmlenc#kw-aes256";

const PLAIN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Geheim xmlns=\"urn:test\"><Wert>Schlüssel &amp; Schloss</Wert></Geheim>\n";

pub fn encrypted_for(cert: &X509) -> String {
    String::from_utf8(ok(encrypt::encrypt_root(
        PLAIN.as_bytes(),
        cert,
        profile::AES256_GCM,
        &limits(),
    )))
    .unwrap()
}

fn decrypt(xml: &str, key: &PKey<Private>) -> Result<Vec<u8>, Problem> {
    encrypt::decrypt_document(xml.as_bytes(), key, &limits())
}

/// Positions of the wrapped key's and the data's CipherValue text.
fn cipher_values(xml: &str) -> [(usize, usize); 2] {
    [
        between(xml, "<xenc:CipherValue>", "</xenc:CipherValue>", 0),
        between(xml, "<xenc:CipherValue>", "</xenc:CipherValue>", 1),
    ]
}

/// `xml` with the CipherValue at `range` changed by `f` on the decoded bytes.
fn edit_value(xml: &str, range: (usize, usize), f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = openssl::base64::decode_block(&xml[range.0..range.1]).unwrap();
    f(&mut bytes);
    format!(
        "{}{}{}",
        &xml[..range.0],
        openssl::base64::encode_block(&bytes),
        &xml[range.1..]
    )
}

fn set_text(xml: &str, range: (usize, usize), text: &str) -> String {
    format!("{}{text}{}", &xml[..range.0], &xml[range.1..])
}

#[test]
fn cbc_tripledes_rsa15_and_indirections_are_refused_before_decryption() {
    let p = pki();
    let enc = encrypted_for(&p.y.cert);
    assert_eq!(ok(decrypt(&enc, &p.y.key)), PLAIN.as_bytes());
    // Each attacked document also with garbage data and garbage wrapped key: the answer must
    // not depend on them.
    let garbage = |xml: &str| {
        let [_, d] = cipher_values(xml);
        let g = set_text(xml, d, "AAAA");
        let [k, _] = cipher_values(&g);
        vec![xml.to_owned(), g.clone(), set_text(&g, k, "AAAA")]
    };
    let data_alg = format!("Algorithm=\"{}\"", profile::AES256_GCM);
    for (alg, what) in [
        (AES256_CBC, "data encryption method"),
        (AES128_CBC, "data encryption method"),
        (TRIPLEDES_CBC, "data encryption method"),
        (KW_AES256, "data encryption method"),
    ] {
        let attacked = replace_once(&enc, &data_alg, &format!("Algorithm=\"{alg}\""));
        for v in garbage(&attacked) {
            refused(
                decrypt(&v, &p.y.key),
                Code::AlgorithmNotAllowed,
                &format!("{what} {alg:?}"),
            );
        }
    }
    let key_alg = format!("Algorithm=\"{}\"", profile::RSA_OAEP_11);
    for alg in [RSA_1_5, KW_AES256, "urn:unknown"] {
        let attacked = replace_once(&enc, &key_alg, &format!("Algorithm=\"{alg}\""));
        for v in garbage(&attacked) {
            refused(
                decrypt(&v, &p.y.key),
                Code::AlgorithmNotAllowed,
                &format!("key transport {alg:?}"),
            );
        }
    }
    // OAEP parameters outside the profile (SHA-1 is accepted for OAEP decryption, MD5 and
    // SHA-224 are not).
    for (from, to, what) in [
        (profile::SHA256, DIGEST_MD5, "digest method"),
        (profile::SHA256, DIGEST_SHA224, "digest method"),
        (
            profile::MGF1_SHA256,
            "http://www.w3.org/2009/xmlenc11#mgf1sha224",
            "mask generation function",
        ),
    ] {
        let attacked = replace_once(&enc, &format!("Algorithm=\"{from}\""), &format!("Algorithm=\"{to}\""));
        for v in garbage(&attacked) {
            refused(decrypt(&v, &p.y.key), Code::AlgorithmNotAllowed, what);
        }
    }
    // CipherReference instead of a value; RetrievalMethod; key agreement.
    let [_, d] = cipher_values(&enc);
    let cref = format!(
        "{}<xenc:CipherReference URI=\"http://evil.example/c\"/>{}",
        &enc[..d.0 - "<xenc:CipherValue>".len()],
        &enc[d.1 + "</xenc:CipherValue>".len()..]
    );
    refused(
        decrypt(&cref, &p.y.key),
        Code::AlgorithmNotAllowed,
        "cipher data \"CipherReference\"",
    );
    let rm = replace_once(
        &enc,
        "<xenc:EncryptedKey>",
        "<ds:RetrievalMethod URI=\"#k\" Type=\"http://www.w3.org/2001/04/xmlenc#EncryptedKey\"/><xenc:EncryptedKey>",
    );
    for v in garbage(&rm) {
        refused(
            decrypt(&v, &p.y.key),
            Code::AlgorithmNotAllowed,
            "KeyInfo element \"RetrievalMethod\"",
        );
    }
    let agree = replace_once(
        &enc,
        "<xenc:EncryptedKey>",
        "<xenc:AgreementMethod Algorithm=\"http://www.w3.org/2009/xmlenc11#ECDH-ES\"/><xenc:EncryptedKey>",
    );
    refused(decrypt(&agree, &p.y.key), Code::AlgorithmNotAllowed, "key agreement");
    // An unknown Type.
    let ty = replace_once(&enc, profile::TYPE_ELEMENT, "http://www.w3.org/2001/04/xmlenc#EXI");
    refused(decrypt(&ty, &p.y.key), Code::AlgorithmNotAllowed, "encrypted data type");
}

#[test]
fn every_decryption_failure_is_one_and_the_same_problem() {
    let p = pki();
    let enc = encrypted_for(&p.y.cert);
    // Positive control.
    assert_eq!(ok(decrypt(&enc, &p.y.key)), PLAIN.as_bytes());
    let [k, d] = cipher_values(&enc);
    let data_len = openssl::base64::decode_block(&enc[d.0..d.1]).unwrap().len();
    let flip = |range, at: usize| edit_value(&enc, range, |b| b[at] ^= 0x01);
    let other = encrypted_for(&p.y.cert);
    let [k_other, _] = cipher_values(&other);
    let attacks: Vec<(&str, String)> = vec![
        ("IV flipped", flip(d, 0)),
        ("ciphertext flipped", flip(d, 12)),
        ("ciphertext last byte flipped", flip(d, data_len - 17)),
        ("tag flipped", flip(d, data_len - 1)),
        ("tag first byte flipped", flip(d, data_len - 16)),
        ("wrapped key first byte", flip(k, 0)),
        ("wrapped key last byte", flip(k, 383)),
        (
            "data truncated by one",
            edit_value(&enc, d, |b| b.truncate(b.len() - 1)),
        ),
        ("tag cut off", edit_value(&enc, d, |b| b.truncate(b.len() - 16))),
        ("data shorter than IV+tag", edit_value(&enc, d, |b| b.truncate(27))),
        ("data empty", set_text(&enc, d, "")),
        ("data not base64", set_text(&enc, d, "%%%%")),
        (
            "data base64 cut mid-quantum",
            set_text(&enc, (d.0, d.1), &enc[d.0..d.1 - 1]),
        ),
        ("wrapped key truncated", edit_value(&enc, k, |b| b.truncate(200))),
        ("wrapped key empty", set_text(&enc, k, "")),
        (
            "wrapped key of another message",
            set_text(&enc, k, &other[k_other.0..k_other.1]),
        ),
        ("ciphertext extended", edit_value(&enc, d, |b| b.insert(20, 0))),
    ];
    let expected = encrypt::failed();
    assert_eq!(expected.code, Code::DecryptionFailed);
    for (what, attacked) in &attacks {
        let got = decrypt(attacked, &p.y.key).expect_err(what);
        assert_eq!(
            (got.code, got.detail.as_str()),
            (expected.code, expected.detail.as_str()),
            "{what}"
        );
    }
    // Wrong keys: another RSA-3072 key, an RSA-2048 key, an EC key.
    let ec = pki::ec_p256();
    for (what, key) in [
        ("other RSA-3072", &p.x.key),
        ("RSA-2048", &p.weak.key),
        ("EC P-256", &ec),
    ] {
        let got = decrypt(&enc, key).expect_err(what);
        assert_eq!(
            (got.code, got.detail.as_str()),
            (expected.code, expected.detail.as_str()),
            "{what}"
        );
    }
    // Through the envelope pipeline: a flipped body gives the same answer.
    let env = String::from_utf8(sealed()).unwrap();
    assert_eq!(ok(open_as_y(env.as_bytes(), &p.x.cert)), MESSAGE.as_bytes());
    let [_, ed] = cipher_values(&env);
    let flipped = edit_value(&env, ed, |b| b[40] ^= 0x80);
    let got = open_as_y(flipped.as_bytes(), &p.x.cert).unwrap_err();
    assert_eq!(
        (got.code, got.detail.as_str()),
        (expected.code, expected.detail.as_str())
    );
    let got = seal::open(env.as_bytes(), &p.x.key, &p.x.cert, &content_policy(), &limits()).unwrap_err();
    assert_eq!(
        (got.code, got.detail.as_str()),
        (expected.code, expected.detail.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

const DOC: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Bescheid><Betrag>10.00</Betrag></Bescheid>\n";

fn at(policy: Policy, t: i64) -> Policy {
    Policy { at: Some(t), ..policy }
}

#[test]
fn attacker_resigning_with_own_self_signed_certificate_is_refused() {
    let p = pki();
    let genuine = sign_doc(DOC, &p.x);
    ok(verify_doc(genuine.as_bytes(), Expect::Anchored, &content_policy()));
    ok(verify_doc(
        genuine.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &content_policy(),
    ));
    ok(verify_doc(
        genuine.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &leaf_policy(),
    ));

    // The attacker changes the amount and re-signs with a self-signed certificate that carries
    // X's subject name.
    let forged = sign_doc(&DOC.replace("10.00", "999999.00"), &p.self_signed);
    // Control: the forgery is a valid signature for the attacker's own certificate.
    ok(verify_doc(
        forged.as_bytes(),
        Expect::Pinned(&p.self_signed.cert),
        &leaf_policy(),
    ));

    refused(
        verify_doc(forged.as_bytes(), Expect::Anchored, &content_policy()),
        Code::CertificateInvalid,
        "is not trusted",
    );
    for policy in [content_policy(), leaf_policy()] {
        refused(
            verify_doc(forged.as_bytes(), Expect::Pinned(&p.x.cert), &policy),
            Code::SignerMismatch,
            "KeyInfo names",
        );
    }
    // Without KeyInfo (or with X's certificate pasted into it) the pinned key decides.
    let (s, e) = (
        forged.find("<ds:KeyInfo>").unwrap(),
        forged.find("</ds:KeyInfo>").unwrap() + 13,
    );
    let bare = format!("{}{}", &forged[..s], &forged[e..]);
    refused(
        verify_doc(bare.as_bytes(), Expect::Pinned(&p.x.cert), &content_policy()),
        Code::SignatureInvalid,
        "the signature value does not match SignedInfo",
    );
    let (gs, ge) = (
        genuine.find("<ds:KeyInfo>").unwrap(),
        genuine.find("</ds:KeyInfo>").unwrap() + 13,
    );
    let pasted = format!("{}{}{}", &forged[..s], &genuine[gs..ge], &forged[e..]);
    refused(
        verify_doc(pasted.as_bytes(), Expect::Pinned(&p.x.cert), &content_policy()),
        Code::SignatureInvalid,
        "the signature value does not match SignedInfo",
    );
    // Anchored, without KeyInfo: no signer at all.
    refused(
        verify_doc(bare.as_bytes(), Expect::Anchored, &content_policy()),
        Code::CertificateInvalid,
        "KeyInfo carries no X509Certificate",
    );
    // A certificate of the wrong role (a node certificate, transport CA) for content.
    let by_node = sign_doc(DOC, &p.node_a);
    ok(verify_doc(by_node.as_bytes(), Expect::Anchored, &transport_policy()));
    refused(
        verify_doc(by_node.as_bytes(), Expect::Anchored, &content_policy()),
        Code::CertificateInvalid,
        "is not trusted",
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let p = pki();
    let t = now();
    for (who, detail) in [(&p.expired, "has expired"), (&p.not_yet_valid, "is not yet valid")] {
        let signed = sign_doc(DOC, who);
        for policy in [content_policy(), leaf_policy()] {
            refused(
                verify_doc(signed.as_bytes(), Expect::Pinned(&who.cert), &policy),
                Code::CertificateInvalid,
                detail,
            );
        }
        refused(
            verify_doc(signed.as_bytes(), Expect::Anchored, &content_policy()),
            Code::CertificateInvalid,
            detail,
        );
    }
    // Positive controls: at a time inside their validity they verify (the expired one pinned:
    // the content CA itself was made today).
    let signed = sign_doc(DOC, &p.expired);
    ok(verify_doc(
        signed.as_bytes(),
        Expect::Pinned(&p.expired.cert),
        &at(leaf_policy(), t - 10 * DAY),
    ));
    let signed = sign_doc(DOC, &p.not_yet_valid);
    ok(verify_doc(
        signed.as_bytes(),
        Expect::Anchored,
        &at(content_policy(), t + 10 * DAY),
    ));

    // X's certificate (825 days) verified far in the future / in the past.
    let signed = sign_doc(DOC, &p.x);
    ok(verify_doc(signed.as_bytes(), Expect::Anchored, &content_policy()));
    refused(
        verify_doc(
            signed.as_bytes(),
            Expect::Anchored,
            &at(content_policy(), t + 900 * DAY),
        ),
        Code::CertificateInvalid,
        "has expired",
    );
    refused(
        verify_doc(
            signed.as_bytes(),
            Expect::Pinned(&p.x.cert),
            &at(leaf_policy(), t - 2 * DAY),
        ),
        Code::CertificateInvalid,
        "is not yet valid",
    );
}

fn with_crl(policy: Policy, crl: &Path) -> Policy {
    Policy {
        crls: vec![crl.to_owned()],
        ..policy
    }
}

#[test]
fn revoked_certificate_and_stale_or_foreign_crls_are_refused() {
    let p = pki();
    let by_revoked = sign_doc(DOC, &p.revoked);
    let by_x = sign_doc(DOC, &p.x);
    // Positive controls: without a CRL the revoked certificate is otherwise fine; with the
    // current CRL, X (not revoked) verifies.
    ok(verify_doc(by_revoked.as_bytes(), Expect::Anchored, &content_policy()));
    ok(verify_doc(
        by_x.as_bytes(),
        Expect::Anchored,
        &with_crl(content_policy(), &p.crl),
    ));
    ok(verify_doc(
        by_x.as_bytes(),
        Expect::Pinned(&p.x.cert),
        &with_crl(content_policy(), &p.crl),
    ));

    refused(
        verify_doc(
            by_revoked.as_bytes(),
            Expect::Anchored,
            &with_crl(content_policy(), &p.crl),
        ),
        Code::CertificateInvalid,
        "certificate revoked",
    );
    refused(
        verify_doc(
            by_revoked.as_bytes(),
            Expect::Pinned(&p.revoked.cert),
            &with_crl(content_policy(), &p.crl),
        ),
        Code::CertificateInvalid,
        "certificate revoked",
    );
    // A CRL past its nextUpdate.
    refused(
        verify_doc(
            by_x.as_bytes(),
            Expect::Anchored,
            &with_crl(content_policy(), &p.crl_stale),
        ),
        Code::CertificateInvalid,
        "CRL has expired",
    );
    // Only a CRL of another CA: the content chain is not covered.
    refused(
        verify_doc(
            by_x.as_bytes(),
            Expect::Anchored,
            &with_crl(content_policy(), &p.crl_rogue),
        ),
        Code::CertificateInvalid,
        "unable to get certificate CRL",
    );
}

/// A chain that passed is remembered for a while (issue 25: the same partner certificates sign
/// every message), but a CRL file replaced under the same path counts at once: the signer it
/// now revokes is refused on the very next signature.
#[test]
fn a_crl_replaced_in_place_revokes_at_once_though_passed_chains_are_remembered() {
    let p = pki();
    let ca = Party::load(p.content_ca.parent().unwrap(), "content-ca");
    let dir = tempfile::tempdir().unwrap();
    let crl = dir.path().join("content-ca.crl.pem");
    let t = now();
    std::fs::write(&crl, pki::crl(&ca.cert, &ca.key, t - DAY, t + 7 * DAY, &[])).unwrap();
    let by_revoked = sign_doc(DOC, &p.revoked);
    let policy = with_crl(content_policy(), &crl);
    for _ in 0..2 {
        ok(verify_doc(by_revoked.as_bytes(), Expect::Anchored, &policy));
    }
    std::fs::write(
        &crl,
        pki::crl(&ca.cert, &ca.key, t - DAY, t + 7 * DAY, &[&p.revoked.cert]),
    )
    .unwrap();
    refused(
        verify_doc(by_revoked.as_bytes(), Expect::Anchored, &policy),
        Code::CertificateInvalid,
        "certificate revoked",
    );
}

#[test]
fn crl_is_applied_to_a_pinned_signer_without_trust_anchors() {
    // `verify --cert C --crl L` (no --trust): the contract says CRLs given are checked.
    let p = pki();
    let by_revoked = sign_doc(DOC, &p.revoked);
    // Control: pinned, no anchors, no CRL → valid.
    ok(verify_doc(
        by_revoked.as_bytes(),
        Expect::Pinned(&p.revoked.cert),
        &leaf_policy(),
    ));
    let r = verify_doc(
        by_revoked.as_bytes(),
        Expect::Pinned(&p.revoked.cert),
        &with_crl(leaf_policy(), &p.crl),
    );
    assert!(
        matches!(&r, Err(e) if e.code == Code::CertificateInvalid),
        "a revoked, pinned signer was accepted although the CRL revoking it was given: {r:?}"
    );
}

#[test]
fn open_applies_the_crls_to_the_author_when_no_content_ca_is_configured() {
    // A node with `security.crls` but without `security.content_ca`: its content policy
    // (NodeKeys::content_for) has no anchors and the CRLs; the author is pinned from the
    // directory. The config promises "when given, every certificate's chain is checked".
    let p = pki();
    let env = ok(seal::seal(
        &header(),
        MESSAGE.as_bytes(),
        &[],
        &p.revoked.identity(),
        &p.y.cert,
        &p.node_a.identity(),
        &limits(),
    ));
    let open = |policy: &Policy| seal::open(&env, &p.y.key, &p.revoked.cert, policy, &limits()).map(|o| o.content);
    // Controls: without CRLs it opens; with the content CA as anchor the CRL refuses it.
    assert_eq!(ok(open(&leaf_policy())), MESSAGE.as_bytes());
    refused(
        open(&with_crl(content_policy(), &p.crl)),
        Code::CertificateInvalid,
        "certificate revoked",
    );
    let r = open(&with_crl(leaf_policy(), &p.crl));
    assert!(
        matches!(&r, Err(e) if e.code == Code::CertificateInvalid),
        "content signed by a revoked author was opened although the CRL revoking it is configured: {:?}",
        r.map(|b| String::from_utf8_lossy(&b).into_owned())
    );
}

#[test]
fn untrusted_ca_is_refused() {
    let p = pki();
    let signed = sign_doc(DOC, &p.rogue);
    // Control: it chains to its own CA.
    let rogue_policy = Policy {
        anchors: vec![p.rogue_ca.clone()],
        ..Policy::default()
    };
    ok(verify_doc(signed.as_bytes(), Expect::Anchored, &rogue_policy));
    refused(
        verify_doc(signed.as_bytes(), Expect::Anchored, &content_policy()),
        Code::CertificateInvalid,
        "unable to get local issuer certificate",
    );
    // The rogue CA shipped along in KeyInfo as an "intermediate" does not help.
    let rogue_ca = X509::from_pem(&std::fs::read(&p.rogue_ca).unwrap()).unwrap();
    let with_ca = replace_once(
        &signed,
        "</ds:X509Data>",
        &format!(
            "<ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data>",
            openssl::base64::encode_block(&rogue_ca.to_der().unwrap())
        ),
    );
    ok(verify_doc(with_ca.as_bytes(), Expect::Anchored, &rogue_policy));
    refused(
        verify_doc(with_ca.as_bytes(), Expect::Anchored, &content_policy()),
        Code::CertificateInvalid,
        "is not trusted",
    );
    // Pinned to the rogue leaf but with the content CA as anchor: refused too.
    refused(
        verify_doc(signed.as_bytes(), Expect::Pinned(&p.rogue.cert), &content_policy()),
        Code::CertificateInvalid,
        "is not trusted",
    );
}

#[test]
fn rsa_2048_signer_needs_the_explicit_exception() {
    let p = pki();
    let signed = sign_doc(DOC, &p.weak);
    for (expect, policy) in [
        (Expect::Anchored, content_policy()),
        (Expect::Pinned(&p.weak.cert), content_policy()),
        (Expect::Pinned(&p.weak.cert), leaf_policy()),
    ] {
        refused(
            verify_doc(signed.as_bytes(), expect, &policy),
            Code::CertificateInvalid,
            "RSA key of 2048 bits is below the floor of 3072",
        );
        ok(verify_doc(
            signed.as_bytes(),
            expect,
            &Policy {
                allow_rsa_2048: true,
                ..policy
            },
        ));
    }
}

#[test]
fn content_signed_by_another_authority_than_the_author_is_signer_mismatch() {
    let p = pki();
    let env = sealed(); // content signed by X
    assert_eq!(ok(open_as_y(&env, &p.x.cert)), MESSAGE.as_bytes());
    refused(
        open_as_y(&env, &p.y.cert),
        Code::SignerMismatch,
        "not the expected signer",
    );
    // Also when the content signature carries no KeyInfo: the pinned author's key decides.
    let sc = String::from_utf8(ok(seal::sign_own(
        signed_content_template("", false).replace(SIG_SLOT, "").as_bytes(),
        &p.x.identity(),
        &limits(),
    )))
    .unwrap();
    let (s, e) = (sc.find("<ds:KeyInfo>").unwrap(), sc.find("</ds:KeyInfo>").unwrap() + 13);
    let bare = format!("{}{}", &sc[..s], &sc[e..]);
    let env = envelope_around(bare.as_bytes());
    assert_eq!(ok(open_as_y(&env, &p.x.cert)), MESSAGE.as_bytes());
    refused(
        open_as_y(&env, &p.y.cert),
        Code::SignatureInvalid,
        "the signature value does not match SignedInfo",
    );
}

// ---------------------------------------------------------------------------------------------
// The same through the command line
// ---------------------------------------------------------------------------------------------

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin()).args(["xml"]).args(args).output().unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[track_caller]
fn cli_refused(out: &Output, prefix: &str, code: Code) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let line = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(
        line.starts_with(&format!("{prefix}: {}: ", code.as_str())),
        "expected {prefix}: {}: …, got {line:?}",
        code.as_str()
    );
    line
}

#[test]
fn cli_refuses_attacks_with_their_codes() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let unsigned = file("doc.xml", DOC.as_bytes());
    let out = run(&[
        os("sign"),
        os("--key"),
        p.x.key_path.as_os_str(),
        os("--cert"),
        p.x.cert_path.as_os_str(),
        unsigned.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let signed = String::from_utf8(out.stdout).unwrap();
    let signed_path = file("signed.xml", signed.as_bytes());
    let trust = [os("--trust"), p.content_ca.as_os_str()];
    let verify = |extra: &[&std::ffi::OsStr], path: &Path| {
        let mut args = vec![os("verify")];
        args.extend_from_slice(extra);
        args.push(path.as_os_str());
        run(&args)
    };
    // Positive control.
    let out = verify(&trust, &signed_path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid: "));

    let downgraded = file("sha1.xml", signed.replace(profile::RSA_PSS_SHA256, RSA_SHA1).as_bytes());
    cli_refused(&verify(&trust, &downgraded), "invalid", Code::AlgorithmNotAllowed);
    let tampered = file("tampered.xml", signed.replace("10.00", "10.01").as_bytes());
    cli_refused(&verify(&trust, &tampered), "invalid", Code::SignatureInvalid);

    let forged = file("forged.xml", sign_doc(DOC, &p.self_signed).as_bytes());
    cli_refused(&verify(&trust, &forged), "invalid", Code::CertificateInvalid);
    cli_refused(
        &verify(&[os("--cert"), p.x.cert_path.as_os_str()], &forged),
        "invalid",
        Code::SignerMismatch,
    );

    let later = [trust[0], trust[1], os("--at"), os("2099-01-01T00:00:00Z")];
    cli_refused(&verify(&later, &signed_path), "invalid", Code::CertificateInvalid);
    let by_revoked = file("revoked.xml", sign_doc(DOC, &p.revoked).as_bytes());
    assert!(verify(&trust, &by_revoked).status.success());
    let crl = [trust[0], trust[1], os("--crl"), p.crl.as_os_str()];
    cli_refused(&verify(&crl, &by_revoked), "invalid", Code::CertificateInvalid);
    let by_weak = file("weak.xml", sign_doc(DOC, &p.weak).as_bytes());
    cli_refused(&verify(&trust, &by_weak), "invalid", Code::CertificateInvalid);
    let allow = [trust[0], trust[1], os("--allow-rsa-2048")];
    let out = verify(&allow, &by_weak);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));

    // Decryption: every failure prints the same line.
    let enc = encrypted_for(&p.y.cert);
    let [k, d] = cipher_values(&enc);
    let decrypt = |path: &Path, key: &Path| run(&[os("decrypt"), os("--key"), key.as_os_str(), path.as_os_str()]);
    let good = file("enc.xml", enc.as_bytes());
    let out = decrypt(&good, &p.y.key_path);
    assert!(out.status.success());
    assert_eq!(out.stdout, PLAIN.as_bytes());
    let mut lines = Vec::new();
    for (name, attacked) in [
        ("tag.xml", edit_value(&enc, d, |b| *b.last_mut().unwrap() ^= 1)),
        ("ct.xml", edit_value(&enc, d, |b| b[12] ^= 1)),
        ("key.xml", edit_value(&enc, k, |b| b[0] ^= 1)),
        ("short.xml", edit_value(&enc, d, |b| b.truncate(10))),
    ] {
        lines.push(cli_refused(
            &decrypt(&file(name, attacked.as_bytes()), &p.y.key_path),
            "error",
            Code::DecryptionFailed,
        ));
    }
    lines.push(cli_refused(
        &decrypt(&good, &p.x.key_path),
        "error",
        Code::DecryptionFailed,
    ));
    for l in &lines {
        assert_eq!(l, "error: decryption-failed: the data cannot be decrypted");
    }
    let cbc = file("cbc.xml", enc.replace(profile::AES256_GCM, AES256_CBC).as_bytes());
    cli_refused(&decrypt(&cbc, &p.y.key_path), "error", Code::AlgorithmNotAllowed);
}

#[test]
fn cli_applies_a_crl_to_a_pinned_signer_without_trust_anchors() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revoked.xml");
    std::fs::write(&path, sign_doc(DOC, &p.revoked)).unwrap();
    let base = [os("verify"), os("--cert"), p.revoked.cert_path.as_os_str()];
    // Control: without the CRL it verifies.
    let mut args = base.to_vec();
    args.push(path.as_os_str());
    assert!(run(&args).status.success());
    let mut args = base.to_vec();
    args.extend([os("--crl"), p.crl.as_os_str(), path.as_os_str()]);
    let out = run(&args);
    assert!(
        !out.status.success(),
        "verify --cert REVOKED --crl CRL accepted the revoked signer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
