//! Throughput of the XML security layer: sign, verify, encrypt, decrypt for a 5 KB and a 1 MB
//! document with RSA-3072 (RSA-PSS, RSA-OAEP) and ECDSA P-256. Run with
//! `cargo bench -p poststelle-tests --bench xmlsec`; `bench/xmlsec.sh` adds `openssl speed` for the same
//! key types in the same run (BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::xml::prescan::Limits;
use gateway::xmlsec::{Expect, Identity, Policy, dom, encrypt, profile, sign, verify};
use poststelle_tests::pki::{self, Cert};

/// A document of about `size` bytes: a header and repeated person records with umlauts.
fn document(size: usize) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<m:nachricht xmlns:m=\"urn:bench\"><m:kopf><m:id>1</m:id></m:kopf>",
    );
    let mut i = 0;
    while s.len() < size {
        s.push_str(&format!(
            "<m:person nr=\"{i}\"><m:name>Jörg Müller-Lüdenscheidt</m:name><m:ort>Köln</m:ort><m:strasse>Hauptstraße {i}</m:strasse></m:person>"
        ));
        i += 1;
    }
    s.push_str("</m:nachricht>");
    s.into_bytes()
}

/// A self-signed identity from the test PKI: ECDSA P-256 or RSA-3072.
fn identity(ec: bool) -> Identity {
    let key = if ec { pki::ec_p256() } else { pki::rsa(3072) };
    let cert = Cert::new("bench").org(None).build(&key, &key);
    Identity { key, cert }
}

fn bench(c: &mut Criterion) {
    let limits = Limits {
        max_bytes: 8 * 1024 * 1024,
        max_elements: 1_000_000,
        ..Limits::default()
    };
    let rsa = identity(false);
    let ec = identity(true);
    let policy = Policy::default();
    for (label, size) in [("5KB", 5 * 1024), ("1MB", 1024 * 1024)] {
        let doc = document(size);
        let mut g = c.benchmark_group(format!("xmlsec/{label}"));
        g.throughput(Throughput::Elements(1));
        if size > 100_000 {
            g.sample_size(10);
        }
        for (alg, id, method) in [
            ("rsa-pss-3072", &rsa, profile::RSA_PSS_SHA256),
            ("ecdsa-p256", &ec, profile::ECDSA_SHA256),
        ] {
            let signed = sign::sign_enveloped(&doc, id, method, profile::SHA256, &limits).unwrap();
            g.bench_function(format!("sign/{alg}"), |b| {
                b.iter(|| sign::sign_enveloped(black_box(&doc), id, method, profile::SHA256, &limits).unwrap())
            });
            g.bench_function(format!("verify/{alg}"), |b| {
                b.iter(|| {
                    let d = dom::parse(black_box(&signed), &limits).unwrap();
                    verify::verify(&d, Expect::Pinned(&id.cert), &policy).unwrap()
                })
            });
        }
        let encrypted = encrypt::encrypt_root(&doc, &rsa.cert, profile::AES256_GCM, &limits).unwrap();
        g.bench_function("encrypt/aes256gcm-rsa-oaep-3072", |b| {
            b.iter(|| encrypt::encrypt_root(black_box(&doc), &rsa.cert, profile::AES256_GCM, &limits).unwrap())
        });
        g.bench_function("decrypt/aes256gcm-rsa-oaep-3072", |b| {
            b.iter(|| encrypt::decrypt_document(black_box(&encrypted), &rsa.key, &limits).unwrap())
        });
        g.finish();
    }
}

/// Streamed attachment encryption (`xmlsec::stream`, AES-256-GCM in 64 KiB segments) over
/// 64 MiB in memory: bytes per second, beside `openssl speed -evp aes-256-gcm`.
fn stream(c: &mut Criterion) {
    use gateway::xmlsec::stream;
    let key = [7u8; 32];
    let plain = vec![0x5au8; 64 << 20];
    let mut sealed = Vec::with_capacity(stream::ciphertext_len(plain.len() as u64) as usize);
    stream::encrypt(&key, &mut &plain[..], &mut sealed).unwrap();
    let mut g = c.benchmark_group("stream/64MiB");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.sample_size(10);
    g.bench_function("encrypt", |b| {
        b.iter(|| stream::encrypt(&key, &mut black_box(&plain[..]), &mut std::io::sink()).unwrap())
    });
    g.bench_function("decrypt", |b| {
        b.iter(|| stream::decrypt(&key, &mut black_box(&sealed[..]), &mut std::io::sink()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench, stream);
criterion_main!(benches);
