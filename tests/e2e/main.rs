//! The one integration-test binary: real nodes, real TLS, real files, on loopback.

mod harness;

mod adapters;
mod amqp;
mod audit;
mod bad_input;
mod certificates;
mod cli;
mod crash;
mod differential;
mod early_refusal;
mod ec_profile;
mod envelope_attacks;
mod faults;
mod file_drop;
mod ocsp;
mod offline_schemas;
mod operators;
mod ops_security;
mod partner_auth;
mod postgres;
mod processes;
mod push;
mod relay;
mod reload;
mod routers;
mod security;
mod soap_props;
mod weak_certs;
mod xbeteiligung;
mod xmlsec_attacks;
mod xmlsec_interop;
mod xmlsec_keys;
mod xmlsec_props;
mod xmlsec_vectors;
mod xta;
