//! The EC profile's encryption (issue 26): content encrypted for an EC recipient travels with
//! an ECDH-ES key agreement (an ephemeral key per document, ConcatKDF with SHA-256, kw-aes256,
//! AES-256-GCM) and opens with the recipient's key on every curve key agreement allows; the
//! attacks on it — a tampered ephemeral key, a point off the curve, a point of another curve,
//! a cut wrapped key, changed KDF parameters, the wrong key type — all end in the one generic
//! decryption error, and what the profile does not allow is refused before any cryptography.
//! A network made with `network init --key-type ec` runs end to end on EC keys alone and loses
//! and doubles nothing through `kill -9` of both nodes.

use gateway::problem::{Code, Problem};
use gateway::xmlsec::{encrypt, profile};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use poststelle_tests::pki::{self, Cert};

use std::time::Duration;

use crate::harness::{Consumer, Counts, Net, node_dir};
use crate::xmlsec_attacks::{limits, refused, replace_once};

const PLAIN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Geheim xmlns=\"urn:test\"><Wert>Schlüssel &amp; Schloss</Wert></Geheim>\n";

/// A recipient on `nid`: key and (self-signed) certificate.
fn recipient(nid: Nid) -> (PKey<Private>, X509) {
    let key = pki::ec(nid);
    let cert = Cert::new("EC recipient").build(&key, &key);
    (key, cert)
}

fn encrypted(cert: &X509) -> String {
    let out = encrypt::encrypt_root(PLAIN.as_bytes(), cert, profile::AES256_GCM, &limits());
    String::from_utf8(out.unwrap_or_else(|p| panic!("{:?}: {}", p.code, p.detail))).unwrap()
}

fn decrypt(xml: &str, key: &PKey<Private>) -> Result<Vec<u8>, Problem> {
    encrypt::decrypt_document(xml.as_bytes(), key, &limits())
}

/// The text between the first `open` and the next `close`.
fn inner<'a>(xml: &'a str, open: &str, close: &str) -> &'a str {
    let start = xml.find(open).unwrap_or_else(|| panic!("no {open}")) + open.len();
    let end = start + xml[start..].find(close).unwrap();
    &xml[start..end]
}

fn b64(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    openssl::base64::decode_block(s).unwrap()
}

/// The one answer for every cryptographic failure.
#[track_caller]
fn generic_failure(r: Result<Vec<u8>, Problem>) {
    let p = refused(r, Code::DecryptionFailed, "cannot be decrypted");
    assert_eq!(p.detail, encrypt::failed().detail);
}

#[test]
fn ec_recipients_on_every_allowed_curve_get_ecdh_es_and_open_it() {
    let curves = [
        (Nid::X9_62_PRIME256V1, "urn:oid:1.2.840.10045.3.1.7"),
        (Nid::SECP384R1, "urn:oid:1.3.132.0.34"),
        (Nid::SECP521R1, "urn:oid:1.3.132.0.35"),
        (Nid::BRAINPOOL_P256R1, "urn:oid:1.3.36.3.3.2.8.1.1.7"),
        (Nid::BRAINPOOL_P384R1, "urn:oid:1.3.36.3.3.2.8.1.1.11"),
    ];
    for (nid, urn) in curves {
        let (key, cert) = recipient(nid);
        let doc = encrypted(&cert);
        for uri in [
            profile::ECDH_ES,
            profile::CONCAT_KDF,
            profile::KW_AES256,
            profile::AES256_GCM,
            urn,
        ] {
            assert!(doc.contains(uri), "{nid:?}: no {uri} in\n{doc}");
        }
        assert!(!doc.contains("Schlüssel"), "plaintext left in the document");
        assert_eq!(decrypt(&doc, &key).unwrap(), PLAIN.as_bytes(), "{nid:?}");
        // A fresh ephemeral key per document.
        let again = encrypted(&cert);
        let point = |d: &str| inner(d, "<dsig11:PublicKey>", "</dsig11:PublicKey>").to_owned();
        assert_ne!(point(&doc), point(&again));
        // Someone else's key of the same curve opens nothing.
        let (other, _) = recipient(nid);
        generic_failure(decrypt(&doc, &other));
    }
}

#[test]
fn attacks_on_the_key_agreement_all_end_in_the_one_generic_error() {
    let (key, cert) = recipient(Nid::X9_62_PRIME256V1);
    let doc = encrypted(&cert);
    assert_eq!(decrypt(&doc, &key).unwrap(), PLAIN.as_bytes(), "positive control");
    let point_b64 = inner(&doc, "<dsig11:PublicKey>", "</dsig11:PublicKey>").to_owned();
    let point = unb64(&point_b64);
    assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
    let with_point = |p: &[u8]| replace_once(&doc, &point_b64, &b64(p));

    // A tampered ephemeral key: a bit of X flipped (off the curve, or another point).
    let mut t = point.clone();
    t[5] ^= 0x01;
    generic_failure(decrypt(&with_point(&t), &key));
    // A point that is not on the curve (the invalid-curve attack): (1, 1).
    let mut off = vec![4u8];
    off.extend([0u8; 31]);
    off.push(1);
    off.extend([0u8; 31]);
    off.push(1);
    generic_failure(decrypt(&with_point(&off), &key));
    // The point at infinity, and a point of the wrong length.
    generic_failure(decrypt(&with_point(&[0u8]), &key));
    generic_failure(decrypt(&with_point(&point[..40]), &key));
    // A genuine point of another curve, named as such: not our key's curve.
    let p384 = pki::ec(Nid::SECP384R1);
    let p384_point = p384
        .ec_key()
        .unwrap()
        .public_key()
        .to_bytes(
            p384.ec_key().unwrap().group(),
            openssl::ec::PointConversionForm::UNCOMPRESSED,
            &mut openssl::bn::BigNumContext::new().unwrap(),
        )
        .unwrap();
    let other_curve = replace_once(
        &with_point(&p384_point),
        "urn:oid:1.2.840.10045.3.1.7",
        "urn:oid:1.3.132.0.34",
    );
    generic_failure(decrypt(&other_curve, &key));
    // The P-256 point declared as a P-384 one.
    generic_failure(decrypt(
        &replace_once(&doc, "urn:oid:1.2.840.10045.3.1.7", "urn:oid:1.3.132.0.34"),
        &key,
    ));
    // The wrapped key cut short, or a bit of it flipped.
    let wrapped_b64 = inner(
        &doc,
        "</xenc:AgreementMethod></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>",
        "<",
    )
    .to_owned();
    let wrapped = unb64(&wrapped_b64);
    assert_eq!(wrapped.len(), 40, "a 256-bit key wrapped");
    for cut in [&wrapped[..32], &wrapped[..24], &wrapped[..8]] {
        generic_failure(decrypt(&replace_once(&doc, &wrapped_b64, &b64(cut)), &key));
    }
    let mut flipped = wrapped.clone();
    flipped[17] ^= 0x80;
    generic_failure(decrypt(&replace_once(&doc, &wrapped_b64, &b64(&flipped)), &key));
    // Changed KDF parameters derive another wrapping key.
    let changed = replace_once(&doc, "PartyUInfo=\"\"", "PartyUInfo=\"00ff\"");
    generic_failure(decrypt(&changed, &key));
    let bad_bits = replace_once(&doc, "PartyUInfo=\"\"", "PartyUInfo=\"03d8\"");
    generic_failure(decrypt(&bad_bits, &key));
    // The wrong kind of key: an RSA key for an EC document, our EC key for an RSA document.
    generic_failure(decrypt(&doc, &pki::rsa(3072)));
    let rsa = pki::rsa(3072);
    let rsa_doc = encrypted(&Cert::new("RSA recipient").build(&rsa, &rsa));
    generic_failure(decrypt(&rsa_doc, &key));
}

#[test]
fn what_the_profile_does_not_allow_is_refused_before_any_cryptography() {
    let (key, cert) = recipient(Nid::X9_62_PRIME256V1);
    let doc = encrypted(&cert);
    let not_allowed = |attacked: String, detail: &str| {
        // NEUTRAL: an RSA key cannot do ECDH, so only the allow-list can decide.
        refused(decrypt(&attacked, &pki::rsa(3072)), Code::AlgorithmNotAllowed, detail);
        refused(decrypt(&attacked, &key), Code::AlgorithmNotAllowed, detail);
    };
    not_allowed(
        replace_once(&doc, profile::ECDH_ES, "http://www.w3.org/2009/xmlenc11#dh-es"),
        "key agreement",
    );
    not_allowed(
        replace_once(&doc, profile::CONCAT_KDF, "http://www.w3.org/2009/xmlenc11#pbkdf2"),
        "key derivation",
    );
    not_allowed(
        replace_once(
            &doc,
            &format!(
                "<ds:DigestMethod Algorithm=\"{}\"/></xenc11:ConcatKDFParams>",
                profile::SHA256
            ),
            &format!(
                "<ds:DigestMethod Algorithm=\"{}\"/></xenc11:ConcatKDFParams>",
                profile::SHA1
            ),
        ),
        "digest method",
    );
    not_allowed(
        replace_once(
            &doc,
            profile::KW_AES256,
            "http://www.w3.org/2001/04/xmlenc#kw-tripledes",
        ),
        "key transport",
    );
    // secp256k1 is no curve of the profile.
    not_allowed(
        replace_once(&doc, "urn:oid:1.2.840.10045.3.1.7", "urn:oid:1.3.132.0.10"),
        "elliptic curve",
    );
    // A static originator key looked up by name instead of the ephemeral key in the document.
    let value = format!(
        "<ds:KeyValue>{}</ds:KeyValue>",
        inner(&doc, "<ds:KeyValue>", "</ds:KeyValue>")
    );
    not_allowed(
        replace_once(&doc, &value, "<ds:KeyName>originator</ds:KeyName>"),
        "originator key",
    );
    // Explicit curve parameters instead of a named curve.
    not_allowed(
        replace_once(
            &doc,
            "<dsig11:NamedCurve",
            "<dsig11:ECParameters><dsig11:FieldID/></dsig11:ECParameters><dsig11:NamedCurve",
        ),
        "EC parameters",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ec_network_delivers_everything_once_through_kill_9_of_both_nodes() {
    let net = Net::init_ec(2);
    for (i, file) in [(0, "node.pem"), (1, "node.pem"), (0, "authorities/psw_01003110.pem")] {
        let cert = X509::from_pem(&std::fs::read(node_dir(&net, i).join(file)).unwrap()).unwrap();
        let curve = cert.public_key().unwrap().ec_key().unwrap().group().curve_name();
        assert_eq!(curve, Some(Nid::X9_62_PRIME256V1), "{file} of node {i}");
    }
    let mut a = net.start(0).await;
    let mut b = net.start(1).await;
    let messages: Vec<(String, Vec<u8>)> = (0..12).map(|_| net.message(0, 1)).collect();
    let uuids: Vec<String> = messages.iter().map(|m| m.0.clone()).collect();
    let client = net.client(0);
    let long = Duration::from_secs(120);
    let mut ids = Vec::new();
    for (i, (_, body)) in messages.iter().enumerate() {
        if i == 6 {
            // Both nodes die with messages in flight, and come back.
            a.kill9();
            b.kill9();
            a = net.start(0).await;
            b = net.start(1).await;
        }
        ids.push(client.submit_until_accepted(body, long).await);
    }
    let at_b = Consumer::start(&net, 1);
    at_b.wait_for(&uuids, long).await;
    for id in &ids {
        assert_eq!(client.wait_ended(id, long).await, "delivered", "{id}");
    }
    assert_eq!(at_b.counts(&uuids, &uuids), Counts::default());
    // The partner's receipt is signed with its EC node key.
    let (status, receipt) = client.get_bytes(&format!("/v1/messages/{}/receipt", ids[0])).await;
    assert_eq!(status, 200);
    let receipt = String::from_utf8(receipt).unwrap();
    assert!(receipt.contains(profile::ECDSA_SHA256), "{receipt}");
    drop((a, b));
}

/// A mixed network: node a keeps RSA-3072, node b's node and authority keys become EC P-256
/// (issued by the same CAs, as in a migration). Each direction uses what the partner's
/// certificate calls for — ECDH-ES to b's authority, RSA-OAEP to a's; receipts are signed
/// ECDSA by b and RSA-PSS by a — and everything arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_network_uses_each_partners_key_type() {
    let net = Net::init(2);
    let root = net.dir.path();
    let load = |stem: &str| {
        let cert = X509::from_pem(&std::fs::read(root.join(format!("{stem}.pem"))).unwrap()).unwrap();
        let key = PKey::private_key_from_pem(&std::fs::read(root.join(format!("{stem}.key"))).unwrap()).unwrap();
        gateway::pki::Issued { cert, key }
    };
    let (ca, content_ca) = (load("ca"), load("content-ca"));
    let b = node_dir(&net, 1);
    let authority = net.node(1).authorities[0].clone();
    let ec = gateway::pki::KeyType::Ec;
    gateway::pki::new_node_cert(&ca, "b", ec)
        .unwrap()
        .write(&b, "node")
        .unwrap();
    gateway::pki::new_authority_cert(&content_ca, &authority, ec)
        .unwrap()
        .write(&b.join("authorities"), &gateway::pki::authority_file_name(&authority))
        .unwrap();
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let long = Duration::from_secs(120);
    for (from, to, signature) in [(0, 1, profile::ECDSA_SHA256), (1, 0, profile::RSA_PSS_SHA256)] {
        let messages: Vec<(String, Vec<u8>)> = (0..3).map(|_| net.message(from, to)).collect();
        let uuids: Vec<String> = messages.iter().map(|m| m.0.clone()).collect();
        let client = net.client(from);
        let mut ids = Vec::new();
        for (_, body) in &messages {
            ids.push(client.submit_until_accepted(body, long).await);
        }
        let consumer = Consumer::start(&net, to);
        consumer.wait_for(&uuids, long).await;
        for id in &ids {
            assert_eq!(client.wait_ended(id, long).await, "delivered", "{from} → {to}: {id}");
        }
        assert_eq!(consumer.counts(&uuids, &uuids), Counts::default());
        let (_, receipt) = client.get_bytes(&format!("/v1/messages/{}/receipt", ids[0])).await;
        let receipt = String::from_utf8(receipt).unwrap();
        assert!(receipt.contains(signature), "{from} → {to}: {receipt}");
    }
}

/// The certificate policy's EC curves: P-256, P-384 and the Brainpool curves of BSI TR-02102
/// (brainpoolP256r1, brainpoolP384r1) sign XML that verifies against the pinned certificate;
/// a key on secp256k1 or P-521 is below the profile (`certificate-invalid`).
#[test]
fn xml_signatures_on_the_profiles_curves_verify_and_other_curves_are_refused() {
    use gateway::xmlsec::{Expect, Identity, Policy, sign, verify};
    let doc = "<Antrag xmlns=\"urn:test\"><Wert>42</Wert></Antrag>";
    let sign_with = |nid: Nid| -> Result<(), Problem> {
        let (key, cert) = recipient(nid);
        let id = Identity { key, cert };
        // The hash matches the curve's strength.
        let bits = id.key.bits();
        let expected = if bits > 256 {
            profile::ECDSA_SHA384
        } else {
            profile::ECDSA_SHA256
        };
        if bits <= 384 {
            assert_eq!(id.default_method(), expected, "{nid:?}");
        }
        let signed = sign::sign_enveloped(doc.as_bytes(), &id, id.default_method(), profile::SHA256, &limits())?;
        let parsed = gateway::xmlsec::dom::parse(&signed, &limits()).unwrap();
        verify::verify(&parsed, Expect::Pinned(&id.cert), &Policy::default()).map(|_| ())
    };
    for nid in [
        Nid::X9_62_PRIME256V1,
        Nid::SECP384R1,
        Nid::BRAINPOOL_P256R1,
        Nid::BRAINPOOL_P384R1,
    ] {
        sign_with(nid).unwrap_or_else(|p| panic!("{nid:?}: {:?} {}", p.code, p.detail));
    }
    for nid in [Nid::SECP256K1, Nid::SECP521R1] {
        refused(sign_with(nid), Code::CertificateInvalid, "EC keys must be on");
    }
}

/// Brainpool (BSI TR-02102), what works: authority keys on brainpoolP256r1 sign content
/// (ECDSA) and receive it (ECDH-ES) end to end; a node (TLS) certificate on it is refused at
/// start, naming the file and the reason (OpenSSL 3.0 has no TLS 1.3 signature scheme for
/// Brainpool curves).
#[tokio::test(flavor = "multi_thread")]
async fn brainpool_authority_keys_work_end_to_end_and_brainpool_node_certificates_are_refused() {
    let net = Net::init_ec(2);
    let root = net.dir.path();
    let load = |stem: &str| {
        let cert = X509::from_pem(&std::fs::read(root.join(format!("{stem}.pem"))).unwrap()).unwrap();
        let key = PKey::private_key_from_pem(&std::fs::read(root.join(format!("{stem}.key"))).unwrap()).unwrap();
        gateway::pki::Issued { cert, key }
    };
    let content_ca = load("content-ca");
    for i in 0..2 {
        let authority = net.node(i).authorities[0].clone();
        gateway::pki::new_authority_cert_for(&content_ca, &authority, pki::ec(Nid::BRAINPOOL_P256R1))
            .unwrap()
            .write(
                &node_dir(&net, i).join("authorities"),
                &gateway::pki::authority_file_name(&authority),
            )
            .unwrap();
    }
    let a = net.start(0).await;
    let _b = net.start(1).await;
    let long = Duration::from_secs(120);
    for (from, to) in [(0, 1), (1, 0)] {
        let (uuid, body) = net.message(from, to);
        let client = net.client(from);
        let id = client.submit_until_accepted(&body, long).await;
        let consumer = Consumer::start(&net, to);
        consumer.wait_for(std::slice::from_ref(&uuid), long).await;
        assert_eq!(client.wait_ended(&id, long).await, "delivered", "{from} → {to}");
    }
    drop(a);
    gateway::pki::new_node_cert_for(&load("ca"), "a", pki::ec(Nid::BRAINPOOL_P256R1))
        .unwrap()
        .write(&node_dir(&net, 0), "node")
        .unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args(["serve", "--config"])
        .arg(&net.node(0).config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a Brainpool TLS certificate");
    assert!(
        stderr.contains("tls.cert") && stderr.contains("TLS certificates must be RSA or on P-256 or P-384"),
        "{stderr}"
    );
}

/// One message each way, both delivered.
async fn both_ways(net: &Net, what: &str) {
    let long = Duration::from_secs(60);
    let (_, ab) = net.message(0, 1);
    let (_, ba) = net.message(1, 0);
    let to_b = net.client(0).submit_until_accepted(&ab, long).await;
    let to_a = net.client(1).submit_until_accepted(&ba, long).await;
    assert_eq!(
        net.client(0).wait_ended(&to_b, long).await,
        "delivered",
        "{what}: a → b"
    );
    assert_eq!(
        net.client(1).wait_ended(&to_a, long).await,
        "delivered",
        "{what}: b → a"
    );
}

/// An authority moves from RSA to EC keys while both nodes run: partners list its old and new
/// certificate (encrypting to the first, verifying with either), the node keeps the previous
/// key to open what is still sealed for it. Every step is a reload, no message is refused,
/// none doubled. Without the previous key, what a partner still seals for it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_authority_moves_from_rsa_to_ec_keys_while_both_nodes_run() {
    let net = Net::init(2);
    let a = net.start(0).await;
    let b = net.start(1).await;
    let at_a = Consumer::start(&net, 0);
    let at_b = Consumer::start(&net, 1);
    both_ways(&net, "before").await;

    // a's authority gets an EC certificate from the content CA.
    let authority = net.node(0).authorities[0].clone();
    let file = gateway::pki::authority_file_name(&authority);
    let read = |name: &str| std::fs::read(net.dir.path().join(name)).unwrap();
    let ca = gateway::pki::Issued {
        cert: X509::from_pem(&read("content-ca.pem")).unwrap(),
        key: PKey::private_key_from_pem(&read("content-ca.key")).unwrap(),
    };
    let ec = gateway::pki::new_authority_cert(&ca, &authority, gateway::pki::KeyType::Ec).unwrap();
    let dir_a = node_dir(&net, 0).join("authorities");
    ec.write(&dir_a, "ec").unwrap();
    let rsa_pem = std::fs::read(dir_a.join(format!("{file}.pem"))).unwrap();
    let old_entry = format!("\"{authority}\" = \"../a/authorities/{file}.pem\"");
    let old_keys = format!("certificate = \"../a/authorities/{file}.pem\"\nkey = \"authorities/{file}.key\"");

    // 1. b lists a's old and new certificate, the old first: it still encrypts to the old.
    std::fs::write(
        dir_a.join("rollover.pem"),
        [rsa_pem, ec.cert.to_pem().unwrap()].concat(),
    )
    .unwrap();
    net.edit_config(1, |t| {
        t.replace(
            &old_entry,
            &format!("\"{authority}\" = \"../a/authorities/rollover.pem\""),
        )
    });
    net.reload(1, &b).await;
    both_ways(&net, "b knows both certificates").await;

    // 2. a signs and decrypts with the EC key. Without the previous key, what b still seals
    // for the RSA key cannot be opened: refused with decryption-failed.
    let new_keys = "certificate = \"authorities/ec.pem\"\nkey = \"authorities/ec.key\"";
    net.edit_config(0, |t| t.replace(&old_keys, new_keys));
    net.reload(0, &a).await;
    let (_, ba) = net.message(1, 0);
    let id = net.client(1).submit_until_accepted(&ba, Duration::from_secs(30)).await;
    assert_eq!(net.client(1).wait_ended(&id, Duration::from_secs(60)).await, "rejected");
    let (_, v) = net.client(1).get_json(&format!("/v1/messages/{id}")).await;
    assert_eq!(v["error"]["code"], "decryption-failed", "{v}");
    // With the previous key it opens both; b verifies a's EC signatures with the second
    // certificate of its list.
    net.edit_config(0, |t| {
        t.replace(
            new_keys,
            &format!(
                "{new_keys}\nprevious_certificate = \"authorities/{file}.pem\"\nprevious_key = \"authorities/{file}.key\""
            ),
        )
    });
    net.reload(0, &a).await;
    both_ways(&net, "a on EC, with the previous key").await;

    // 3. b encrypts to the new key only; 4. a drops the previous key.
    net.edit_config(1, |t| {
        t.replace("../a/authorities/rollover.pem", "../a/authorities/ec.pem")
    });
    net.reload(1, &b).await;
    both_ways(&net, "b on the new certificate only").await;
    net.edit_config(0, |t| {
        t.replace(
            &format!("\nprevious_certificate = \"authorities/{file}.pem\"\nprevious_key = \"authorities/{file}.key\""),
            "",
        )
    });
    net.reload(0, &a).await;
    both_ways(&net, "a without the previous key").await;
    // Nothing arrived twice at either client.
    for (consumer, what) in [(&at_a, "at a"), (&at_b, "at b")] {
        assert_eq!(consumer.counts(&[], &[]).duplicated, 0, "{what}");
    }
}
