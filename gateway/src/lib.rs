//! Poststelle: an inter-agency XML messaging gateway (XÖV / OSCI / XTA tradition).
//!
//! The library holds the whole node; `main.rs` only parses the command line and calls [`cli`].
//! See ARCHITECTURE.md for the map.

pub mod access;
pub mod actions;
pub mod adapter_tools;
pub mod admin;
pub mod amqp;
pub mod audit;
pub mod bench;
pub mod certs;
pub mod cli;
pub mod config;
pub mod ctx;
pub mod demo;
pub mod dropdir;
pub mod embedded;
pub mod envelope;
pub mod failpoints;
pub mod files;
pub mod health;
pub mod intake;
pub mod network;
pub mod node;
pub mod ops;
pub mod partner;
pub mod pipeline;
pub mod pki;
pub mod problem;
pub mod reload;
pub mod revocation;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod wire;
pub mod xml;
pub mod xmlsec;
pub mod xta_client;

#[cfg(test)]
mod tidy;
