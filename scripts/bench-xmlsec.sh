#!/usr/bin/env bash
# XML security figures for BENCHMARKS.md: our sign/verify/encrypt/decrypt (criterion) next to
# `openssl speed` for the same key types, in one run on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== openssl speed (RSA-3072 sign/verify = PKCS#1 v1.5 / raw; ECDSA P-256; AES-256-GCM)"
openssl version
openssl speed -seconds 3 rsa3072 ecdsap256 2>/dev/null | grep -E "^(rsa|ecdsa|  *[0-9]+ bits)|sign/s|verify/s" || true
openssl speed -seconds 2 -evp aes-256-gcm -bytes 1048576 2>/dev/null | tail -2
echo "== poststelle xmlsec (criterion)"
cargo bench -p poststelle-tests --bench xmlsec -- --noplot 2>&1 | grep -E "^xmlsec|time:"
