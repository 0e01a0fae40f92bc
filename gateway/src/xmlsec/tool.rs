//! `poststelle xml sign|verify|encrypt|decrypt`: the security layer on files, for operators,
//! partners testing interoperability, and the CI's checks against independent implementations.
//! Exit codes: 0 done/valid, 1 invalid or undecryptable (one line on stderr with the code),
//! 2 usage or setup error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::trust::{self, Policy};
use super::verify::{self, Expect};
use super::{Identity, dom, encrypt, profile, sign};
use crate::problem::Problem;
use crate::xml::prescan::Limits;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SigAlg {
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
}

impl SigAlg {
    fn uri(self) -> &'static str {
        match self {
            SigAlg::RsaPssSha256 => profile::RSA_PSS_SHA256,
            SigAlg::RsaPssSha384 => profile::RSA_PSS_SHA384,
            SigAlg::RsaPssSha512 => profile::RSA_PSS_SHA512,
            SigAlg::RsaSha256 => profile::RSA_SHA256,
            SigAlg::RsaSha384 => profile::RSA_SHA384,
            SigAlg::RsaSha512 => profile::RSA_SHA512,
            SigAlg::EcdsaSha256 => profile::ECDSA_SHA256,
            SigAlg::EcdsaSha384 => profile::ECDSA_SHA384,
            SigAlg::EcdsaSha512 => profile::ECDSA_SHA512,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DigestAlg {
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CipherAlg {
    Aes256Gcm,
    Aes128Gcm,
}

#[derive(Debug, Subcommand)]
pub enum XmlCommand {
    /// Enveloped XML signature (exc-c14n, SHA-256 by default) to stdout.
    Sign {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        cert: PathBuf,
        /// Default: rsa-pss-sha256 for RSA keys, ecdsa-sha256 for EC keys.
        #[arg(long, value_enum)]
        alg: Option<SigAlg>,
        #[arg(long, value_enum, default_value = "sha256")]
        digest: DigestAlg,
        /// The document, or - for stdin.
        input: PathBuf,
    },
    /// Verify the document's one signature: exit 0 valid, 1 invalid (reason on stderr).
    Verify {
        /// Trust anchor(s); the KeyInfo certificate must chain to one of them.
        #[arg(long)]
        trust: Vec<PathBuf>,
        /// The expected signer's certificate (pinned: its key is used, KeyInfo only a hint).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// CRL file(s) (PEM) for revocation checks.
        #[arg(long)]
        crl: Vec<PathBuf>,
        /// Verification time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Accept 2048-bit RSA signers (an explicit, logged exception to the 3072-bit floor).
        #[arg(long)]
        allow_rsa_2048: bool,
        input: PathBuf,
    },
    /// XML Encryption 1.1 of the root element for the recipient's certificate, to stdout.
    Encrypt {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long, value_enum, default_value = "aes256-gcm")]
        cipher: CipherAlg,
        input: PathBuf,
    },
    /// Decrypt every EncryptedData with the private key, to stdout.
    Decrypt {
        #[arg(long)]
        key: PathBuf,
        input: PathBuf,
    },
}

fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

fn limits() -> Limits {
    // Files given on the command line may be as large as an envelope.
    Limits::default().for_envelopes()
}

fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("poststelle: {e}");
    ExitCode::from(2)
}

fn refused(prefix: &str, p: &Problem) -> ExitCode {
    eprintln!("{prefix}: {}: {}", p.code, p.detail);
    ExitCode::from(1)
}

fn output(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(format!("cannot write the output: {e}")),
    }
}

/// Runs one `xml` subcommand.
pub fn run(cmd: XmlCommand) -> ExitCode {
    run_checked(cmd).unwrap_or_else(|exit| exit)
}

/// `Err` carries the exit code of a usage or setup error (already reported on stderr).
fn run_checked(cmd: XmlCommand) -> Result<ExitCode, ExitCode> {
    Ok(match cmd {
        XmlCommand::Sign {
            key,
            cert,
            alg,
            digest,
            input,
        } => {
            let id = Identity::load(&key, &cert).map_err(usage)?;
            let xml = read_input(&input).map_err(usage)?;
            let method = alg.map_or(id.default_method(), SigAlg::uri);
            let digest = match digest {
                DigestAlg::Sha256 => profile::SHA256,
                DigestAlg::Sha384 => profile::SHA384,
                DigestAlg::Sha512 => profile::SHA512,
            };
            match sign::sign_enveloped(&xml, &id, method, digest, &limits()) {
                Ok(signed) => output(&signed),
                Err(p) => refused("error", &p),
            }
        }
        XmlCommand::Verify {
            trust,
            cert,
            crl,
            at,
            allow_rsa_2048,
            input,
        } => {
            if trust.is_empty() && cert.is_none() {
                return Err(usage("verify needs --trust CA.pem, --cert C.pem or both"));
            }
            let at = at.as_deref().map(parse_time).transpose().map_err(usage)?;
            if allow_rsa_2048 {
                eprintln!("warning: accepting 2048-bit RSA signers (--allow-rsa-2048)");
            }
            let policy = Policy {
                anchors: trust,
                crls: crl,
                at,
                allow_rsa_2048,
            };
            let pinned = cert.as_deref().map(trust::load_cert).transpose().map_err(usage)?;
            let xml = read_input(&input).map_err(usage)?;
            let result = dom::parse(&xml, &limits()).and_then(|doc| {
                let expect = pinned.as_ref().map_or(Expect::Anchored, Expect::Pinned);
                verify::verify(&doc, expect, &policy).map(|v| trust::describe(&v.signer))
            });
            match result {
                Ok(signer) => {
                    println!("valid: {signer}");
                    ExitCode::SUCCESS
                }
                Err(p) => refused("invalid", &p),
            }
        }
        XmlCommand::Encrypt { cert, cipher, input } => {
            let recipient = trust::load_cert(&cert).map_err(usage)?;
            let xml = read_input(&input).map_err(usage)?;
            let cipher = match cipher {
                CipherAlg::Aes256Gcm => profile::AES256_GCM,
                CipherAlg::Aes128Gcm => profile::AES128_GCM,
            };
            match encrypt::encrypt_root(&xml, &recipient, cipher, &limits()) {
                Ok(e) => output(&e),
                Err(p) => refused("error", &p),
            }
        }
        XmlCommand::Decrypt { key, input } => {
            let key = trust::load_private_key(&key).map_err(usage)?;
            let xml = read_input(&input).map_err(usage)?;
            match encrypt::decrypt_document(&xml, &key, &limits()) {
                Ok(plain) => output(&plain),
                Err(p) => refused("error", &p),
            }
        }
    })
}

fn parse_time(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("--at {s:?} is not an RFC 3339 time: {e}"))
}
