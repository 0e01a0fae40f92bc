//! The one integration-test binary: real nodes, real TLS, real files, on loopback.

mod harness;

mod bad_input;
mod crash;
mod partner_auth;
mod relay;
