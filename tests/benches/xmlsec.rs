//! Throughput of the XML security layer: sign, verify, encrypt, decrypt for a 5 KB and a 1 MB
//! document with RSA-3072 (RSA-PSS, RSA-OAEP) and EC P-256 (ECDSA, ECDH-ES). Run with
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
        let encrypted = encrypt::encrypt_root(&doc, &ec.cert, profile::AES256_GCM, &limits).unwrap();
        g.bench_function("encrypt/aes256gcm-ecdh-es-p256", |b| {
            b.iter(|| encrypt::encrypt_root(black_box(&doc), &ec.cert, profile::AES256_GCM, &limits).unwrap())
        });
        g.bench_function("decrypt/aes256gcm-ecdh-es-p256", |b| {
            b.iter(|| encrypt::decrypt_document(black_box(&encrypted), &ec.key, &limits).unwrap())
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

/// The seal and open stages of a streamed attachment, file to file (`pipeline::attachments`):
/// read, hash, encrypt or decrypt, hash, write and fsync 64 MiB. The files are rewritten in
/// place each time, so the page cache's pages are reused (see BENCHMARKS.md on new pages).
fn attachment_files(c: &mut Criterion) {
    use gateway::envelope::{Attachment, Carried};
    use gateway::files::{Entry, Files, Manifest};
    use gateway::pipeline::attachments;
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let (out, inbound) = (
        "out/0190a0b0-0000-7000-8000-000000000001",
        "in/a/0190a0b0-0000-7000-8000-000000000002",
    );
    let plain: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::create_dir_all(files.folder(out)).unwrap();
    std::fs::create_dir_all(files.folder(inbound)).unwrap();
    std::fs::write(files.plain(out, 0), &plain).unwrap();
    let sha256 = openssl::sha::sha256(&plain);
    let manifest = Manifest {
        folder: out.into(),
        files: vec![Entry {
            content_type: "application/octet-stream".into(),
            filename: None,
            size: plain.len() as u64,
            sha256: gateway::envelope::hex(&sha256),
        }],
    };
    let key = [9u8; 32];
    attachments::seal_files(&files, &manifest, &key).unwrap();
    std::fs::copy(files.sealed(out, 0), files.sealed(inbound, 0)).unwrap();
    let carried = [Attachment {
        content_type: "application/octet-stream".into(),
        filename: None,
        body: Carried::Streamed {
            size: plain.len() as u64,
            sha256: sha256.to_vec(),
        },
    }];
    let mut g = c.benchmark_group("attachment-files/64MiB");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.sample_size(10);
    g.bench_function("seal", |b| {
        b.iter(|| attachments::seal_files(&files, black_box(&manifest), &key).unwrap())
    });
    g.bench_function("open", |b| {
        b.iter(|| attachments::open_files(&files, inbound, black_box(&carried), &key).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench, stream, attachment_files);
criterion_main!(benches);
