//! Certificates and keys as the node loaded them at start: `NodeKeys` (its own identities and
//! the directory's certificates, each checked against its role's anchors) for the security
//! layer, and every configured certificate with its expiry for operators (admin API, metrics).

use openssl::x509::X509;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::Config;
use crate::store::rfc3339;
use crate::xmlsec::Identity;
use crate::xmlsec::trust::Policy;

/// A node's security material, loaded and checked at start: its own identity (TLS key, which
/// also signs envelopes and receipts), its authorities' identities, and the directory's
/// certificates, each checked against the trust anchors of its role.
#[derive(Debug)]
pub struct NodeKeys {
    pub node: Identity,
    pub authorities: std::collections::BTreeMap<String, Identity>,
    /// Our authorities' previous identities during a key migration (decryption only).
    pub previous_authorities: std::collections::BTreeMap<String, Identity>,
    /// Partner node certificates by node name: one, or the old and the new during a rollover.
    pub partner_nodes: std::collections::BTreeMap<String, Vec<X509>>,
    /// Partner authority certificates by authority id: one, or during the authority's key
    /// migration two; the first is encrypted to, either verifies its signatures.
    pub partner_authorities: std::collections::BTreeMap<String, Vec<X509>>,
    /// Node role: anchors `tls.ca`.
    pub transport: Policy,
    /// Authority role: anchors `security.content_ca`.
    pub content: Policy,
    allow_rsa_2048: Vec<String>,
}

/// The environment variable that may hold the passphrase of encrypted key files.
pub const KEY_PASSPHRASE_ENV: &str = "POSTSTELLE_KEY_PASSPHRASE";

/// The passphrase of the node's encrypted key files: the first line of
/// `security.key_passphrase_file`, else `POSTSTELLE_KEY_PASSPHRASE`, else none. Never from the
/// config itself, never logged.
pub fn key_passphrase(config: &crate::config::Config) -> Result<Option<Vec<u8>>, String> {
    if let Some(f) = &config.security.key_passphrase_file {
        let text = std::fs::read(f).map_err(|e| format!("security.key_passphrase_file {}: {e}", f.display()))?;
        let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        return Ok(Some(line.strip_suffix(b"\r").unwrap_or(line).to_vec()));
    }
    Ok(std::env::var_os(KEY_PASSPHRASE_ENV).map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec()))
}

impl NodeKeys {
    /// Loads every key and certificate of the config (encrypted key files with
    /// [`key_passphrase`]); reports every problem at once.
    pub fn load(config: &crate::config::Config) -> Result<NodeKeys, Vec<String>> {
        use crate::xmlsec::trust::{self, Usage};
        let mut errs = Vec::new();
        let passphrase = key_passphrase(config).unwrap_or_else(|e| {
            errs.push(e);
            None
        });
        let passphrase = passphrase.as_deref();
        let transport = Policy {
            anchors: vec![config.tls.ca.clone()],
            crls: config.security.crls.clone(),
            ..Policy::default()
        };
        let content = Policy {
            anchors: config.security.content_ca.iter().cloned().collect(),
            crls: config.security.crls.clone(),
            ..Policy::default()
        };
        // `what` names the setting and the file, so the operator knows which one to replace.
        let check = |errs: &mut Vec<String>, what: &str, cert: &X509, policy: &Policy, usage: Usage| {
            if let Err(p) = trust::check_pinned(cert, &[], usage, policy) {
                errs.push(format!("{what}: {}", p.detail));
            }
        };
        let file = |what: &str, path: &std::path::Path| format!("{what} ({})", path.display());
        let node = Identity::load_with(&config.tls.key, &config.tls.cert, passphrase);
        let tls_key = |errs: &mut Vec<String>, what: &str, cert: &X509| {
            if let Err(p) = trust::check_tls_key(cert) {
                errs.push(format!("{what}: {}", p.detail));
            }
        };
        if let Ok(n) = &node {
            let what = file("tls.cert", &config.tls.cert);
            check(&mut errs, &what, &n.cert, &transport, Usage::Sign);
            tls_key(&mut errs, &what, &n.cert);
        }
        let mut authorities = std::collections::BTreeMap::new();
        for (id, files) in &config.authority_keys {
            match Identity::load_with(&files.key, &files.certificate, passphrase) {
                Ok(i) => {
                    let what = file(&format!("authority {id}"), &files.certificate);
                    check(&mut errs, &what, &i.cert, &content, Usage::Sign);
                    check(&mut errs, &what, &i.cert, &content, Usage::Encrypt);
                    authorities.insert(id.clone(), i);
                }
                Err(e) => errs.push(format!("authority {id}: {e}")),
            }
        }
        let mut previous_authorities = std::collections::BTreeMap::new();
        for (id, files) in &config.authority_keys {
            let Some((cert, key)) = &files.previous else { continue };
            match Identity::load_with(key, cert, passphrase) {
                Ok(i) => {
                    check(
                        &mut errs,
                        &file(&format!("authority {id} (previous)"), cert),
                        &i.cert,
                        &content,
                        Usage::Encrypt,
                    );
                    previous_authorities.insert(id.clone(), i);
                }
                Err(e) => errs.push(format!("authority {id} (previous): {e}")),
            }
        }
        let mut partner_nodes = std::collections::BTreeMap::new();
        let mut partner_authorities = std::collections::BTreeMap::new();
        for p in &config.partners {
            let exception = config.security.allow_rsa_2048.contains(&p.node);
            if exception {
                tracing::warn!(partner = %p.node, "accepting 2048-bit RSA keys of this partner (configured exception)");
            }
            let t = Policy {
                allow_rsa_2048: exception,
                ..transport.clone()
            };
            let c = Policy {
                allow_rsa_2048: exception,
                ..content.clone()
            };
            match trust::load_certs(&p.certificate) {
                Ok(certs) => {
                    let what = file(&format!("partner {}", p.node), &p.certificate);
                    for cert in &certs {
                        check(&mut errs, &what, cert, &t, Usage::Sign);
                        tls_key(&mut errs, &what, cert);
                    }
                    partner_nodes.insert(p.node.clone(), certs);
                }
                Err(e) => errs.push(format!("partner {}: {e}", p.node)),
            }
            for (a, path) in &p.authority_certificates {
                match trust::load_certs(path) {
                    Ok(certs) => {
                        let what = file(&format!("partner authority {a}"), path);
                        for cert in &certs {
                            check(&mut errs, &what, cert, &c, Usage::Sign);
                            check(&mut errs, &what, cert, &c, Usage::Encrypt);
                        }
                        partner_authorities.insert(a.clone(), certs);
                    }
                    Err(e) => errs.push(format!("partner authority {a}: {e}")),
                }
            }
        }
        let node = match node {
            Ok(n) => n,
            Err(e) => {
                errs.push(format!("tls: {e}"));
                return Err(errs);
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(NodeKeys {
            node,
            authorities,
            previous_authorities,
            partner_nodes,
            partner_authorities,
            transport,
            content,
            allow_rsa_2048: config.security.allow_rsa_2048.clone(),
        })
    }

    /// The node-role policy for a partner (with its key-size exception, if configured).
    pub fn transport_for(&self, partner: &str) -> Policy {
        self.for_partner(&self.transport, partner)
    }

    /// The authority-role policy for a partner's authority.
    pub fn content_for(&self, partner: &str) -> Policy {
        self.for_partner(&self.content, partner)
    }

    fn for_partner(&self, role: &Policy, partner: &str) -> Policy {
        Policy {
            allow_rsa_2048: self.allow_rsa_2048.iter().any(|p| p == partner),
            ..role.clone()
        }
    }
}

/// One configured certificate and when it expires.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateView {
    /// `node` (TLS and transport signatures), `ca`, `content-ca`, `authority` (ours),
    /// `partner` (a partner node's), `partner-authority` (an authority behind a partner).
    pub role: &'static str,
    /// Which one: the node, authority id or partner name.
    pub name: String,
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
    /// Negative: expired.
    pub days_left: i64,
    /// With OCSP configured, our node certificate (stapled) and the partners' node and
    /// authority certificates: the last answer (`good`, `revoked`, `unknown`, `failed`, `unchecked`) and when it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<crate::revocation::View>,
}

/// The roles a configured certificate can have.
pub const ROLES: [&str; 6] = ["node", "ca", "content-ca", "authority", "partner", "partner-authority"];

/// A certificate the node loaded at start, with what operators know it by.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    pub role: &'static str,
    pub name: String,
    pub cert: openssl::x509::X509,
}

/// Every certificate in the files the config names (every certificate of a chain or bundle),
/// read once at start: the node uses what it loaded then. Files that cannot be read are left
/// out (the config check at start reports them).
pub fn load_certificates(config: &Config) -> Vec<LoadedCertificate> {
    let mut files: Vec<(&'static str, String, &std::path::Path)> = vec![
        ("node", config.node_name.clone(), &config.tls.cert),
        ("ca", config.node_name.clone(), &config.tls.ca),
    ];
    if let Some(ca) = &config.security.content_ca {
        files.push(("content-ca", config.node_name.clone(), ca));
    }
    for (id, k) in &config.authority_keys {
        files.push(("authority", id.clone(), &k.certificate));
        if let Some((previous, _)) = &k.previous {
            files.push(("authority", format!("{id} (previous)"), previous));
        }
    }
    for p in &config.partners {
        files.push(("partner", p.node.clone(), &p.certificate));
        for (id, c) in &p.authority_certificates {
            files.push(("partner-authority", id.clone(), c));
        }
    }
    let mut out = Vec::new();
    for (role, name, path) in files {
        let Ok(pem) = std::fs::read(path) else { continue };
        for cert in openssl::x509::X509::stack_from_pem(&pem).unwrap_or_default() {
            out.push(LoadedCertificate {
                role,
                name: name.clone(),
                cert,
            });
        }
    }
    out
}

/// The node's certificates with days left as of now, soonest expiry first.
pub fn certificates(loaded: &[LoadedCertificate], revocation: &crate::revocation::Checker) -> Vec<CertificateView> {
    let Ok(now) = openssl::asn1::Asn1Time::days_from_now(0) else {
        return Vec::new();
    };
    let mut out: Vec<CertificateView> = loaded
        .iter()
        .filter_map(|c| {
            let diff = now.diff(c.cert.not_after()).ok()?;
            // Whole days left, rounded down: expired yesterday is -1, not 0.
            let days_left = (i64::from(diff.days) * 86_400 + i64::from(diff.secs)).div_euclid(86_400);
            let subject = c
                .cert
                .subject_name()
                .entries()
                .filter_map(|e| {
                    let key = e.object().nid().short_name().ok()?;
                    Some(format!("{key}={}", e.data().to_string().ok()?))
                })
                .collect::<Vec<_>>()
                .join(", ");
            Some(CertificateView {
                role: c.role,
                name: c.name.clone(),
                subject,
                not_after: asn1_rfc3339(c.cert.not_after()),
                days_left,
                revocation: (revocation.enabled() && ["node", "partner", "partner-authority"].contains(&c.role))
                    .then(|| {
                        crate::xmlsec::trust::fingerprint(&c.cert)
                            .ok()
                            .map(|fp| revocation.view(&fp))
                    })
                    .flatten(),
            })
        })
        .collect();
    out.sort_by_key(|c| c.days_left);
    out
}

/// An ASN.1 time (as OpenSSL prints it, `Nov 22 20:00:00 2027 GMT`) in RFC 3339.
fn asn1_rfc3339(t: &openssl::asn1::Asn1TimeRef) -> String {
    let text = t.to_string();
    let format =
        time::macros::format_description!("[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT");
    time::PrimitiveDateTime::parse(&text, format)
        .map(|p| p.assume_utc().unix_timestamp() * 1000)
        .map(rfc3339)
        .unwrap_or(text)
}
