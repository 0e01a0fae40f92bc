//! XML Encryption 1.1 key agreement for EC recipients: ECDH-ES with an ephemeral key per
//! document (`xenc:AgreementMethod`), the ConcatKDF of NIST SP 800-56A (single step, with a
//! hash) over the shared secret, and AES key wrap (RFC 3394) of the content key with the key it
//! derives. Pure functions over OpenSSL; `encrypt.rs` reads and writes the XML around them.
//!
//! Every failure here is `None` / `Err(())`: the caller turns all of them into the one
//! `decryption-failed` answer.

use openssl::aes::{AesKey, unwrap_key, wrap_key};
use openssl::bn::BigNumContext;
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::hash::{Hasher, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};

/// The curves ECDH-ES works on, by the URN of their OID (`dsig11:NamedCurve/@URI`): the NIST
/// curves P-256, P-384 and P-521, and the Brainpool curves German public-sector PKIs use.
const CURVES: [(&str, Nid); 5] = [
    ("urn:oid:1.2.840.10045.3.1.7", Nid::X9_62_PRIME256V1),
    ("urn:oid:1.3.132.0.34", Nid::SECP384R1),
    ("urn:oid:1.3.132.0.35", Nid::SECP521R1),
    ("urn:oid:1.3.36.3.3.2.8.1.1.7", Nid::BRAINPOOL_P256R1),
    ("urn:oid:1.3.36.3.3.2.8.1.1.11", Nid::BRAINPOOL_P384R1),
];

/// The curve a `NamedCurve` URI names, if key agreement allows it.
pub fn curve(uri: &str) -> Option<Nid> {
    let uri = uri.trim();
    CURVES
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(uri))
        .map(|(_, n)| *n)
}

/// The `NamedCurve` URI of an EC key's curve, if key agreement allows it.
pub fn curve_uri<T: openssl::pkey::HasParams>(key: &PKeyRef<T>) -> Option<&'static str> {
    let nid = key.ec_key().ok()?.group().curve_name()?;
    CURVES.iter().find(|(_, n)| *n == nid).map(|(u, _)| *u)
}

/// The curve of an EC key (`None`: not EC, or a curve without a name).
fn nid_of<T: openssl::pkey::HasParams>(key: &PKeyRef<T>) -> Option<Nid> {
    if key.id() != Id::EC {
        return None;
    }
    key.ec_key().ok()?.group().curve_name()
}

/// A peer's public key for key agreement, checked by [`public_key`]: on one of [`CURVES`], on
/// that curve, not the point at infinity. Only such a key reaches [`shared_secret`].
pub struct PeerKey {
    key: PKey<Public>,
    nid: Nid,
}

/// A public key on `nid`, one of [`CURVES`], from its encoded point (SEC 1: uncompressed
/// `04‖X‖Y`, or compressed). OpenSSL refuses a point that is not on the curve (the
/// invalid-curve attack) or whose coordinates are out of range; the point at infinity is
/// refused here. Every one of [`CURVES`] has cofactor 1 (a test checks it), so each point on
/// the curve but infinity has the group's prime order, and OpenSSL's whole-key check
/// (`EC_KEY_check_key`, and the same check in `EVP_PKEY_derive_set_peer`: one more scalar
/// multiplication, `n·P = O`) would add nothing.
pub fn public_key(nid: Nid, point: &[u8]) -> Option<PeerKey> {
    if !CURVES.iter().any(|(_, n)| *n == nid) {
        return None;
    }
    let group = EcGroup::from_curve_name(nid).ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    let point = EcPoint::from_bytes(&group, point, &mut ctx).ok()?;
    if point.is_infinity(&group) {
        return None;
    }
    let key = PKey::from_ec_key(EcKey::from_public_key(&group, &point).ok()?).ok()?;
    Some(PeerKey { key, nid })
}

/// A recipient's key (from its certificate) checked as [`public_key`] checks a document's.
pub fn peer(key: &PKeyRef<Public>) -> Option<PeerKey> {
    public_key(nid_of(key)?, &public_point(key)?)
}

/// The shared secret Z (the x coordinate of the product) of `ours` and `theirs`, which must be
/// on the same curve. OpenSSL does not check `theirs` again: [`public_key`] did.
pub fn shared_secret(ours: &PKeyRef<Private>, theirs: &PeerKey) -> Option<Vec<u8>> {
    if nid_of(ours)? != theirs.nid {
        return None;
    }
    let mut deriver = Deriver::new(ours).ok()?;
    deriver.set_peer_ex(&theirs.key, false).ok()?;
    deriver.derive_to_vec().ok()
}

/// ConcatKDF: `len` bytes of `H(1‖Z‖info) ‖ H(2‖Z‖info) ‖ …`, the counter a 32-bit big-endian
/// number, `info` the FixedInfo (AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖ SuppPubInfo ‖
/// SuppPrivInfo).
pub fn concat_kdf(digest: MessageDigest, z: &[u8], info: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len + digest.size());
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut h = Hasher::new(digest).ok()?;
        h.update(&counter.to_be_bytes()).ok()?;
        h.update(z).ok()?;
        h.update(info).ok()?;
        out.extend_from_slice(&h.finish().ok()?);
        counter = counter.checked_add(1)?;
    }
    out.truncate(len);
    Some(out)
}

/// A ConcatKDFParams attribute (a bit string as hexBinary: one octet counting the padding bits,
/// then the bits): its bytes. Only whole octets (a first octet of 0) are accepted; an absent or
/// empty attribute is no bytes.
pub fn bit_string(attr: Option<&str>) -> Option<Vec<u8>> {
    let hex = attr.unwrap_or("").trim();
    if hex.is_empty() {
        return Some(Vec::new());
    }
    if !hex.len().is_multiple_of(2) || hex.len() > 2048 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    match bytes.split_first() {
        Some((0, rest)) => Some(rest.to_vec()),
        _ => None,
    }
}

/// AES key wrap (RFC 3394) of `key` (16, 24 or 32 bytes) with `kek`.
pub fn wrap(kek: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    if key.len() < 16 || !key.len().is_multiple_of(8) {
        return None;
    }
    let kek = AesKey::new_encrypt(kek).ok()?;
    let mut out = vec![0u8; key.len() + 8];
    let n = wrap_key(&kek, None, &mut out, key).ok()?;
    out.truncate(n);
    Some(out)
}

/// Unwraps an RFC 3394 wrapped key with `kek`; `None` when its integrity check fails.
pub fn unwrap(kek: &[u8], wrapped: &[u8]) -> Option<Vec<u8>> {
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) || wrapped.len() > 8 + 64 {
        return None;
    }
    let kek = AesKey::new_decrypt(kek).ok()?;
    let mut out = vec![0u8; wrapped.len() - 8];
    let n = unwrap_key(&kek, None, &mut out, wrapped).ok()?;
    out.truncate(n);
    Some(out)
}

/// A fresh key pair on the curve of `recipient`, for one document.
pub fn ephemeral_for(recipient: &PeerKey) -> Option<PKey<Private>> {
    let group = EcGroup::from_curve_name(recipient.nid).ok()?;
    PKey::from_ec_key(EcKey::generate(&group).ok()?).ok()
}

/// An EC key's public point, uncompressed (`04‖X‖Y`), as `dsig11:PublicKey` carries it.
pub fn public_point<T>(key: &PKeyRef<T>) -> Option<Vec<u8>>
where
    T: openssl::pkey::HasPublic,
{
    let ec = key.ec_key().ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    ec.public_key()
        .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_kdf_counts_its_blocks_from_one() {
        // Two blocks of SHA-256, the second cut short: block i hashes the counter i, Z and the info.
        let one = concat_kdf(MessageDigest::sha256(), b"z", b"i", 32).unwrap();
        let two = concat_kdf(MessageDigest::sha256(), b"z", b"i", 40).unwrap();
        assert_eq!(&two[..32], &one[..]);
        let mut h = Hasher::new(MessageDigest::sha256()).unwrap();
        h.update(&[0, 0, 0, 2]).unwrap();
        h.update(b"zi").unwrap();
        assert_eq!(&two[32..], &h.finish().unwrap()[..8]);
    }

    #[test]
    fn bit_strings_are_whole_octets_after_a_zero_pad_count() {
        assert_eq!(bit_string(None), Some(vec![]));
        assert_eq!(bit_string(Some("")), Some(vec![]));
        assert_eq!(bit_string(Some("00")), Some(vec![]));
        assert_eq!(bit_string(Some("00b9e1")), Some(vec![0xb9, 0xe1]));
        assert_eq!(bit_string(Some("03D8")), None, "padding bits are not supported");
        assert_eq!(bit_string(Some("0")), None);
        assert_eq!(bit_string(Some("00zz")), None);
    }

    #[test]
    fn every_curve_key_agreement_allows_has_cofactor_one() {
        let mut ctx = BigNumContext::new().unwrap();
        for (uri, nid) in CURVES {
            let mut cofactor = openssl::bn::BigNum::new().unwrap();
            EcGroup::from_curve_name(nid)
                .unwrap()
                .cofactor(&mut cofactor, &mut ctx)
                .unwrap();
            assert_eq!(cofactor, openssl::bn::BigNum::from_u32(1).unwrap(), "{uri}");
        }
        // A curve outside the list is refused whatever the point.
        let group = EcGroup::from_curve_name(Nid::SECP256K1).unwrap();
        let k1 = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        assert!(public_key(Nid::SECP256K1, &public_point(&k1).unwrap()).is_none());
    }

    #[test]
    fn agreement_both_ways_and_a_point_off_the_curve_is_refused() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let recipient = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let public = public_key(Nid::X9_62_PRIME256V1, &public_point(&recipient).unwrap()).unwrap();
        let eph = ephemeral_for(&public).unwrap();
        let eph_public = public_key(Nid::X9_62_PRIME256V1, &public_point(&eph).unwrap()).unwrap();
        let z1 = shared_secret(&eph, &public).unwrap();
        let z2 = shared_secret(&recipient, &eph_public).unwrap();
        assert_eq!(z1, z2);
        assert_eq!(z1.len(), 32);
        // Flip a bit of Y: almost surely no longer on the curve.
        let mut bad = public_point(&eph).unwrap();
        bad[64] ^= 1;
        assert!(public_key(Nid::X9_62_PRIME256V1, &bad).is_none());
        // The point at infinity (SEC 1: one zero octet), on every curve key agreement allows.
        for (_, nid) in CURVES {
            assert!(public_key(nid, &[0]).is_none(), "{nid:?}");
        }
        // A P-384 peer for a P-256 key.
        let g384 = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
        let other = PKey::from_ec_key(EcKey::generate(&g384).unwrap()).unwrap();
        let other = public_key(Nid::SECP384R1, &public_point(&other).unwrap()).unwrap();
        assert!(shared_secret(&recipient, &other).is_none());
        // A certificate's key is checked as a document's.
        let public = PKey::public_key_from_der(&recipient.public_key_to_der().unwrap()).unwrap();
        assert_eq!(
            shared_secret(&eph, &peer(&public).unwrap()).unwrap(),
            z1,
            "the recipient's key from its encoding"
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn key_wrap_is_rfc_3394_and_detects_tampering() {
        // RFC 3394 4.6: 256 bits of key data with a 256-bit KEK.
        let kek = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let key = hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        let wrapped = hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21");
        assert_eq!(wrap(&kek, &key).unwrap(), wrapped);
        assert_eq!(unwrap(&kek, &wrapped).unwrap(), key);
        let mut t = wrapped.clone();
        t[3] ^= 1;
        assert!(unwrap(&kek, &t).is_none());
        assert!(unwrap(&kek, &wrapped[..32]).is_none(), "truncated");
        assert!(unwrap(&kek, &wrapped[..15]).is_none());
    }
}
