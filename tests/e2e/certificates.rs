//! The operators' certificate view (`gateway::certs::certificates`, behind
//! `/admin/api/certificates` and the expiry metric) over certificates from the test PKI.

use gateway::certs::{LoadedCertificate, certificates};
use openssl::x509::X509;
use poststelle_tests::pki::{self, Cert, DAY};

/// A self-signed certificate valid until `now + seconds` (negative: already expired).
fn cert(cn: &str, seconds: i64) -> X509 {
    let key = pki::ec_p256();
    let now = pki::now();
    Cert::new(cn)
        .org(None)
        .valid(now - 10 * DAY, now + seconds)
        .build(&key, &key)
}

#[test]
fn every_certificate_of_a_bundle_counts_and_expired_ones_are_negative() {
    let loaded = |role, name: &str, cert| LoadedCertificate {
        role,
        name: name.into(),
        cert,
    };
    let views = certificates(
        &[
            loaded("ca", "a", cert("far", 400 * 86_400 + 3600)),
            loaded("ca", "a", cert("soon", 5 * 86_400 + 3600)),
            loaded("partner", "b", cert("gone", -(3600 * 20))),
        ],
        // Without OCSP configured no revocation status is shown.
        &Default::default(),
    );
    let got: Vec<(&str, &str, i64)> = views
        .iter()
        .map(|v| (v.subject.as_str(), v.name.as_str(), v.days_left))
        .collect();
    assert_eq!(
        got,
        [("CN=gone", "b", -1), ("CN=soon", "a", 5), ("CN=far", "a", 400)],
        "expired 20 h ago is -1 days; both certificates of the bundle are listed, soonest first"
    );
    assert!(views[1].not_after.ends_with('Z'), "{}", views[1].not_after);
}

/// The trust anchors are parsed once per file and kept (a verification per message read them
/// each time); a replaced anchor file is read again, so a chain that the old anchor carried
/// and the new one does not is refused from then on, and the other way round.
#[test]
fn a_replaced_anchor_file_is_read_again() {
    use gateway::pki::{KeyType, new_authority_cert, new_ca};
    use gateway::xmlsec::trust::{Usage, check_pinned};
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("anchor.pem");
    let (one, two) = (
        new_ca("CA one", KeyType::Ec).unwrap(),
        new_ca("CA two, a longer name", KeyType::Ec).unwrap(),
    );
    let of_one = new_authority_cert(&one, "psw:1", KeyType::Ec).unwrap();
    let policy = gateway::xmlsec::Policy {
        anchors: vec![anchor.clone()],
        ..Default::default()
    };
    let check = || check_pinned(&of_one.cert, &[], Usage::Sign, &policy);
    std::fs::write(&anchor, one.cert.to_pem().unwrap()).unwrap();
    assert!(check().is_ok());
    assert!(check().is_ok(), "from the kept anchors");
    std::fs::write(&anchor, two.cert.to_pem().unwrap()).unwrap();
    assert!(check().is_err(), "the new anchor does not carry it");
    std::fs::write(&anchor, one.cert.to_pem().unwrap()).unwrap();
    assert!(check().is_ok(), "and the old one again");
}
