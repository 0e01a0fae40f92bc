//! Writes the fuzz targets' fixed key material: an RSA-3072 key and a self-signed certificate
//! (digitalSignature + keyEncipherment, valid 2000–2099) to `keys/fuzz.key` / `keys/fuzz.pem`.
//! The targets embed both with `include_bytes!`, so a seed signed or encrypted with them stays
//! valid for the fuzzer. Test material only; it protects nothing.

use poststelle_tests::pki::{Cert, Profile, Usage};

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let key = poststelle_tests::pki::rsa(3072);
    let cert = Cert::new("fuzz signer and recipient")
        .org(Some("Poststelle fuzzing"))
        // 2000-01-01T00:00:00Z to 2099-12-31T23:59:59Z.
        .valid(946_684_800, 4_102_444_799)
        .profile(Profile::Leaf(Usage::SIGN_AND_TRANSPORT))
        .build(&key, &key);
    std::fs::write(dir.join("fuzz.pem"), cert.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("fuzz.key"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    println!("wrote {}/fuzz.{{pem,key}}", dir.display());
}
