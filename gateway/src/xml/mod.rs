//! XML handling below the adapters: the pre-scan of untrusted bytes, offline schema resolution
//! (catalogs + a network-refusing entity loader), libxml2 schema validation and the adapters'
//! XSLT transforms.

pub mod catalog;
pub mod libxml;
pub mod prescan;
pub mod validate;
pub mod xslt;

/// libxml2 parser options for documents that passed the pre-scan: strict, quiet, no network,
/// no DTD defaults, no huge-document relaxation.
pub fn parser_options() -> ::libxml::parser::ParserOptions<'static> {
    ::libxml::parser::ParserOptions {
        recover: false,
        no_def_dtd: true,
        no_error: true,
        no_warning: true,
        no_net: true,
        huge: false,
        ..::libxml::parser::ParserOptions::default()
    }
}
