//! Who may call: bearer tokens kept only as SHA-256 hashes (configured in clear or as
//! `token_sha256`, compared in constant time after hashing), the roles of admin tokens, and
//! the admin listener's transport (TLS, or plain HTTP only on loopback unless allowed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A token as the node keeps it: its SHA-256, never the token itself.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Tokens shorter than this are refused in the configuration.
pub const MIN_TOKEN: usize = 16;

impl Secret {
    /// The secret of a token given in clear (the caller checks its length).
    pub fn of(token: &str) -> Secret {
        Secret(openssl::sha::sha256(token.as_bytes()))
    }

    /// A `token_sha256` value: 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Secret> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Secret(out))
    }

    /// Whether `presented` is this token: hashed, then compared in constant time, so neither
    /// its length nor a matching prefix shows in the time taken.
    pub fn matches(&self, presented: &str) -> bool {
        openssl::memcmp::eq(&openssl::sha::sha256(presented.as_bytes()), &self.0)
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A token as configured: `token = "…"` or `token_sha256 = "…"`, exactly one of them.
/// `what` names the setting in problems (e.g. `clients[0]`).
pub fn secret(what: &str, token: Option<&str>, sha256: Option<&str>, errs: &mut Vec<String>) -> Option<Secret> {
    match (token.filter(|t| !t.is_empty()), sha256) {
        (Some(_), Some(_)) => errs.push(format!("{what}: give token or token_sha256, not both")),
        (None, None) => errs.push(format!("{what}: needs token or token_sha256")),
        (Some(t), None) if t.chars().count() < MIN_TOKEN => {
            errs.push(format!("{what}.token: must be at least {MIN_TOKEN} characters"))
        }
        (Some(t), None) => return Some(Secret::of(t)),
        (None, Some(h)) => match Secret::from_hex(h) {
            Some(s) => return Some(s),
            None => errs.push(format!(
                "{what}.token_sha256: must be 64 hex digits (`poststelle token new` prints one)"
            )),
        },
    }
    None
}

/// What an admin token may do; each role may do everything of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every GET: status, queues, messages' metadata and timelines, partners, certificates.
    Viewer,
    /// Also retry, cancel and dead-letter replay.
    Operator,
    /// Also a message's payload on request and the audit log's tail.
    Auditor,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One admin token: its name (in the audit log), its role, its hash.
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub name: String,
    pub role: Role,
    pub secret: Secret,
}

/// `[admin]`: the admin listener's tokens and transport.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// One token in clear, with the role `operator` and the name `admin` (kept working beside
    /// `tokens`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// Admin tokens, each with a name (the audit log records it) and a role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<RawAdminToken>,
    /// Serve the admin listener over TLS, with the node's certificate or `cert` and `key`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Plain HTTP on an address other than loopback, on purpose (refused without it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plain: bool,
}

/// The admin listener as validated.
#[derive(Debug, Clone)]
pub struct Admin {
    pub tokens: Vec<AdminToken>,
    /// TLS: certificate and key files (absolute); `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Validates `[admin]` for a listener on `addr`; `node_tls` gives the node's certificate and
/// key, which TLS uses unless `cert` and `key` are given.
pub fn admin(
    raw: &RawAdmin,
    addr: SocketAddr,
    node_tls: (&Path, &Path),
    abs: &dyn Fn(&Path) -> PathBuf,
    errs: &mut Vec<String>,
) -> Admin {
    let tokens = admin_tokens(&raw.token, &raw.tokens, errs);
    if raw.cert.is_some() != raw.key.is_some() {
        errs.push("admin.cert, admin.key: give both or neither".into());
    }
    if !raw.tls && (raw.cert.is_some() || raw.key.is_some()) {
        errs.push("admin.cert, admin.key: only with tls = true".into());
    }
    let tls = raw.tls.then(|| match (&raw.cert, &raw.key) {
        (Some(c), Some(k)) => (abs(c), abs(k)),
        _ => (node_tls.0.to_path_buf(), node_tls.1.to_path_buf()),
    });
    for p in tls.iter().flat_map(|(c, k)| [c, k]) {
        if !p.is_file() {
            errs.push(format!("admin: {} does not exist", p.display()));
        }
    }
    if !raw.tls && !raw.allow_plain && !addr.ip().is_loopback() {
        errs.push(format!(
            "admin: plain HTTP on {addr} is reachable from other machines; set tls = true, \
             or allow_plain = true if that is on purpose"
        ));
    }
    Admin { tokens, tls }
}

/// `[[admin.tokens]]`: `name`, `role` (`viewer`, `operator`, `auditor`), and `token_sha256`
/// (or `token` in clear).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminToken {
    pub name: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// The admin tokens of a configuration: `[admin] token` (`clear`, an operator named `admin`)
/// and `[[admin.tokens]]`; names and tokens unique; every problem into `errs`.
pub fn admin_tokens(clear: &str, raw: &[RawAdminToken], errs: &mut Vec<String>) -> Vec<AdminToken> {
    let mut tokens: Vec<AdminToken> = Vec::new();
    if !clear.is_empty()
        && let Some(secret) = secret("admin", Some(clear), None, errs)
    {
        tokens.push(AdminToken {
            name: "admin".into(),
            role: Role::Operator,
            secret,
        });
    }
    if clear.is_empty() && raw.is_empty() {
        errs.push("admin: needs token or [[admin.tokens]]".into());
    }
    let mut names: std::collections::BTreeSet<String> = tokens.iter().map(|t| t.name.clone()).collect();
    for (i, t) in raw.iter().enumerate() {
        let what = format!("admin.tokens[{i}]");
        let role = Role::parse(&t.role);
        if role.is_none() {
            errs.push(format!(
                "{what}.role: {:?} is not a role (viewer, operator, auditor)",
                t.role
            ));
        }
        let name_ok = !t.name.trim().is_empty() && t.name.len() <= 64 && !t.name.chars().any(char::is_control);
        if !name_ok {
            errs.push(format!("{what}.name: 1 to 64 characters, no control characters"));
        }
        if !names.insert(t.name.clone()) {
            errs.push(format!("{what}.name: {:?} is taken by another admin token", t.name));
        }
        let secret = secret(&what, t.token.as_deref(), t.token_sha256.as_deref(), errs);
        if let Some(s) = &secret
            && tokens.iter().any(|o| &o.secret == s)
        {
            errs.push(format!("{what}: the same token as another admin token"));
        }
        if let (Some(role), Some(secret), true) = (role, secret, name_ok) {
            tokens.push(AdminToken {
                name: t.name.clone(),
                role,
                secret,
            });
        }
    }
    tokens
}

/// A fresh random token (24 random bytes, hex) and its `token_sha256`.
pub fn new_token() -> Result<(String, String), openssl::error::ErrorStack> {
    let mut b = [0u8; 24];
    openssl::rand::rand_bytes(&mut b)?;
    let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let hash = Secret::of(&token).hex();
    Ok((token, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_hash_and_nothing_else() {
        let (token, hash) = new_token().unwrap();
        assert_eq!(token.len(), 48);
        let s = Secret::from_hex(&hash).unwrap();
        assert!(s.matches(&token));
        assert!(!s.matches(&token[1..]));
        assert!(!s.matches(""));
        assert_eq!(s, Secret::of(&token));
        assert_eq!(s.hex(), hash);
        assert_eq!(format!("{s:?}"), "Secret(…)", "never printed");
        // The hash of "abc" (FIPS 180-2), so the format is the one `sha256sum` prints.
        assert_eq!(
            Secret::of("abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn every_problem_of_a_configured_token_is_named() {
        let mut errs = Vec::new();
        assert!(secret("a", Some("short"), None, &mut errs).is_none());
        assert!(secret("b", Some("0123456789abcdef"), Some(&"0".repeat(64)), &mut errs).is_none());
        assert!(secret("c", None, None, &mut errs).is_none());
        assert!(secret("d", None, Some("xyz"), &mut errs).is_none());
        assert!(secret("e", None, Some(&"g".repeat(64)), &mut errs).is_none());
        assert!(secret("f", Some("0123456789abcdef"), None, &mut errs).is_some());
        assert!(secret("g", None, Some(&"AB".repeat(32)), &mut errs).is_some());
        let text = errs.join("\n");
        for needle in [
            "a.token: must be at least 16",
            "b: give token or token_sha256, not both",
            "c: needs",
            "d.token_sha256",
            "e.token_sha256",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert_eq!(errs.len(), 5, "{text}");
    }

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Auditor);
        for r in [Role::Viewer, Role::Operator, Role::Auditor] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
