//! What the test binaries and benches share beyond the e2e harness: the one test PKI.

pub mod pki;
