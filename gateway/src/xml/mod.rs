//! XML handling below the adapters: the pre-scan of untrusted bytes, offline schema resolution
//! (catalogs + a network-refusing entity loader) and libxml2 schema validation.

pub mod catalog;
pub mod libxml;
pub mod prescan;
pub mod validate;
