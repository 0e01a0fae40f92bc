//! Revocation of partner certificates by OCSP (RFC 6960), beside the CRL files.
//!
//! The certificates to check are known in advance: the directory pins every partner node's
//! certificate and every partner authority's. A background task ([`Checker::refresh`], run by
//! the node) asks each certificate's responder (the configured one, else the certificate's AIA
//! OCSP address) and keeps the verified answer until its `nextUpdate` (or `max_cache_seconds`
//! without one), asking again half-way so that an answer never goes stale while it is renewed.
//! Checks in the handshake and on every signature only read that cache
//! ([`Checker::verdict`]), so no TLS handshake and no message waits on a responder.
//!
//! A response counts only if it is signed by the certificate's issuer (or by a responder
//! certificate the issuer delegated with `id-kp-OCSPSigning`), names the certificate, and is
//! current (`thisUpdate` not in the future, `nextUpdate` not past, 5 minutes leeway).
//! `revoked` refuses the certificate everywhere. With no usable answer (responder down, a
//! malformed or stale response, `unknown`) the role's policy decides: refuse (the default),
//! or with `soft_fail` accept with a warning and a metric; `ocsp-then-crl` falls back to the
//! CRL files where they are configured.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use metrics::{counter, gauge};
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use serde::{Deserialize, Serialize};

/// Counter: OCSP answers by role and outcome (`good`, `revoked`, `unknown`, `failed`).
pub const CHECKS: &str = "poststelle_revocation_checks_total";
/// Gauge: certificates of a role (the partners', and our node certificate for stapling) whose
/// last revocation check got no usable answer (alert > 0).
pub const FAILING: &str = "poststelle_revocation_checks_failing";
/// Counter: certificates accepted without an OCSP answer under `soft_fail`, by role.
pub const SOFT_FAILS: &str = "poststelle_revocation_soft_fail_total";

/// `[security.revocation]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `crl` (only the CRL files of `[security] crls`), `ocsp`, or `ocsp-then-crl` (the CRL
    /// files decide while no OCSP answer can be had).
    #[serde(default)]
    pub mode: Mode,
    /// The responder for node certificates instead of each certificate's AIA address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder: Option<String>,
    /// The responder for authority (author) certificates instead of their AIA address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_responder: Option<String>,
    /// Roles (`node`, `authority`) whose certificates are accepted, with a warning and a
    /// metric, while their responder gives no usable answer. Default: none (refuse).
    #[serde(default)]
    pub soft_fail: Vec<CertRole>,
    /// How long an answer without `nextUpdate` is kept.
    #[serde(default = "default_max_cache")]
    pub max_cache_seconds: u64,
    /// Seconds between attempts while a responder gives no usable answer.
    #[serde(default = "default_retry")]
    pub retry_seconds: u64,
}

fn default_max_cache() -> u64 {
    3600
}

fn default_retry() -> u64 {
    10
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Crl,
            responder: None,
            content_responder: None,
            soft_fail: Vec::new(),
            max_cache_seconds: default_max_cache(),
            retry_seconds: default_retry(),
        }
    }
}

impl Settings {
    /// Written into a configuration file only when it differs from the default.
    pub fn is_default(&self) -> bool {
        *self == Settings::default()
    }

    /// Every problem of the settings.
    pub fn check(&self, errs: &mut Vec<String>) {
        for (what, url) in [
            ("responder", &self.responder),
            ("content_responder", &self.content_responder),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                errs.push(format!("security.revocation.{what}: {u:?} must be an http(s) URL"));
            }
        }
        if !(1..=86_400).contains(&self.max_cache_seconds) || !(1..=3600).contains(&self.retry_seconds) {
            errs.push("security.revocation: max_cache_seconds must be 1..=86400, retry_seconds 1..=3600".into());
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Crl,
    Ocsp,
    OcspThenCrl,
}

/// Whose certificate: a partner node's (TLS, transport signatures, receipts) or a partner
/// authority's (content signatures).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum CertRole {
    Node,
    Authority,
}

impl CertRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Node => "node",
            CertRole::Authority => "authority",
        }
    }
}

/// A certificate to check: the certificate, its role, and the anchors its issuer is among.
#[derive(Debug, Clone)]
pub struct Target {
    pub cert: X509,
    pub role: CertRole,
    pub anchors: Vec<PathBuf>,
}

/// What the last check of one certificate found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Status {
    Good,
    Revoked {
        since: String,
    },
    /// The responder does not know the certificate.
    Unknown,
    /// No usable answer: why.
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    status: Status,
    role: CertRole,
    /// When it was checked and until when the answer holds (milliseconds; `valid_until` 0
    /// for a failed check).
    checked: i64,
    valid_until: i64,
    /// The signed response itself (DER), for stapling our own certificate's.
    response: Option<std::sync::Arc<Vec<u8>>>,
}

/// The revocation state of the directory's certificates, by SHA-256 fingerprint.
#[derive(Debug, Default)]
pub struct Checker {
    settings: Mutex<(Settings, bool)>,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

/// A certificate's revocation state for operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct View {
    /// `good`, `revoked`, `unknown`, `failed`, or `unchecked` (not yet, or `mode = "crl"`).
    pub status: String,
    /// RFC 3339: when the responder was last asked.
    pub checked: Option<String>,
    /// Why the last check failed, or since when the certificate is revoked.
    pub detail: Option<String>,
}

use crate::store::{now_millis as now_ms, rfc3339};

impl Checker {
    /// Puts `settings` in force (at start and at every reload); `crls` says whether CRL files
    /// are configured (the fallback of `ocsp-then-crl`).
    pub fn configure(&self, settings: &Settings, crls: bool) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = (settings.clone(), crls);
    }

    fn settings(&self) -> (Settings, bool) {
        self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a certificate of `role` may be used now: `Err` names why not. Reads only the
    /// cache; with `mode = "crl"` always `Ok` (the CRL files are checked elsewhere).
    pub fn verdict(&self, fingerprint: &[u8; 32], role: CertRole) -> Result<(), String> {
        let (settings, crls) = self.settings();
        if settings.mode == Mode::Crl {
            return Ok(());
        }
        let now = now_ms();
        let entry = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(fingerprint)
            .cloned();
        let why = match entry {
            Some(Entry {
                status: Status::Revoked { since },
                ..
            }) => return Err(format!("the certificate is revoked (OCSP, since {since})")),
            Some(Entry {
                status: Status::Good,
                valid_until,
                ..
            }) if valid_until > now => return Ok(()),
            Some(Entry {
                status: Status::Good, ..
            }) => "the OCSP answer is stale".to_owned(),
            Some(Entry {
                status: Status::Unknown,
                ..
            }) => "the OCSP responder does not know the certificate".to_owned(),
            Some(Entry {
                status: Status::Failed { reason },
                ..
            }) => format!("no OCSP answer ({reason})"),
            None => "not checked by OCSP yet".to_owned(),
        };
        if settings.mode == Mode::OcspThenCrl && crls {
            return Ok(());
        }
        if settings.soft_fail.contains(&role) {
            // Once a minute at most: every handshake and signature asks.
            static LAST_WARNING: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
            let last = LAST_WARNING.load(std::sync::atomic::Ordering::Relaxed);
            if now - last > 60_000
                && LAST_WARNING
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                tracing::warn!(role = role.as_str(), reason = %why, "certificate accepted without revocation status (soft_fail; this warning at most once a minute, the count in poststelle_revocation_soft_fail_total)");
            }
            counter!(SOFT_FAILS, "role" => role.as_str()).increment(1);
            return Ok(());
        }
        Err(why)
    }

    /// [`Checker::verdict`] for a certificate that signed something: `certificate-invalid`
    /// naming whose certificate and why.
    pub fn usable(&self, cert: &X509, role: CertRole) -> Result<(), crate::problem::Problem> {
        use crate::problem::{Code, Problem};
        let fp = crate::xmlsec::trust::fingerprint(cert)
            .map_err(|e| Problem::new(Code::CertificateInvalid, e.to_string()))?;
        let whose = match role {
            CertRole::Node => "the partner node's certificate",
            CertRole::Authority => "the author's certificate",
        };
        self.verdict(&fp, role)
            .map_err(|reason| Problem::new(Code::CertificateInvalid, format!("{whose}: {reason}")))
    }

    /// The current signed answer about a certificate (DER), to staple it in our TLS handshakes.
    pub fn staple(&self, fingerprint: &[u8; 32]) -> Option<std::sync::Arc<Vec<u8>>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.get(fingerprint)?;
        (e.valid_until > now_ms()).then(|| e.response.clone()).flatten()
    }

    /// Whether OCSP is asked at all (`mode` is not `crl`).
    pub fn enabled(&self) -> bool {
        self.settings().0.mode != Mode::Crl
    }

    /// The state of one certificate for operators.
    pub fn view(&self, fingerprint: &[u8; 32]) -> View {
        match self.entries.lock().unwrap_or_else(|e| e.into_inner()).get(fingerprint) {
            None => View {
                status: "unchecked".into(),
                checked: None,
                detail: None,
            },
            Some(e) => {
                let (status, detail) = match &e.status {
                    Status::Good => ("good", None),
                    Status::Revoked { since } => ("revoked", Some(format!("since {since}"))),
                    Status::Unknown => ("unknown", None),
                    Status::Failed { reason } => ("failed", Some(reason.clone())),
                };
                View {
                    status: status.into(),
                    checked: Some(rfc3339(e.checked)),
                    detail,
                }
            }
        }
    }

    /// Asks the responders about every target whose answer is due, keeps what they say, and
    /// returns how long until the next one is due. Forgets certificates no longer targeted.
    pub async fn refresh(&self, targets: &[Target], http: &reqwest::Client) -> Duration {
        let (settings, _) = self.settings();
        let retry = Duration::from_secs(settings.retry_seconds);
        if settings.mode == Mode::Crl {
            self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
            return retry;
        }
        let mut wanted = std::collections::HashSet::new();
        let mut next = now_ms() + (settings.max_cache_seconds * 1000) as i64;
        for t in targets {
            let Ok(fp) = crate::xmlsec::trust::fingerprint(&t.cert) else {
                continue;
            };
            wanted.insert(fp);
            let due = self
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&fp)
                .map(|e| match e.status {
                    Status::Good | Status::Revoked { .. } => renew_at(e.checked, e.valid_until),
                    _ => e.checked + retry.as_millis() as i64,
                });
            if let Some(due) = due
                && due > now_ms()
            {
                next = next.min(due);
                continue;
            }
            let responder = match t.role {
                CertRole::Node => settings.responder.clone(),
                CertRole::Authority => settings.content_responder.clone(),
            };
            let checked = now_ms();
            let (status, valid_until, response) = match ask(t, responder, http, settings.max_cache_seconds).await {
                Ok((s, until, der)) => (s, until, Some(std::sync::Arc::new(der))),
                Err(reason) => (Status::Failed { reason }, 0, None),
            };
            let outcome = match &status {
                Status::Good => "good",
                Status::Revoked { .. } => "revoked",
                Status::Unknown => "unknown",
                Status::Failed { reason } => {
                    tracing::warn!(role = t.role.as_str(), %reason, "OCSP check failed");
                    "failed"
                }
            };
            counter!(CHECKS, "role" => t.role.as_str(), "outcome" => outcome).increment(1);
            next = next.min(match status {
                Status::Good | Status::Revoked { .. } => renew_at(checked, valid_until),
                _ => checked + retry.as_millis() as i64,
            });
            self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(
                fp,
                Entry {
                    status,
                    role: t.role,
                    checked,
                    valid_until,
                    response,
                },
            );
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|fp, _| wanted.contains(fp));
        for role in [CertRole::Node, CertRole::Authority] {
            let failing = entries
                .values()
                .filter(|e| e.role == role && !matches!(e.status, Status::Good | Status::Revoked { .. }))
                .count();
            gauge!(FAILING, "role" => role.as_str()).set(failing as f64);
        }
        Duration::from_millis((next - now_ms()).clamp(200, 3_600_000) as u64)
    }
}

/// When an answer asked at `checked` and holding until `valid_until` is asked again: half-way,
/// so that the new answer is in before the old one goes stale. Asked only at `valid_until`,
/// every signature checked during the round trip met a stale answer and was refused for good
/// (`certificate-invalid`): the suite caught it with `max_cache_seconds = 1` under load.
fn renew_at(checked: i64, valid_until: i64) -> i64 {
    checked + (valid_until - checked).max(0) / 2
}

/// One OCSP exchange for `t`: the status and until when it holds (milliseconds).
async fn ask(
    t: &Target,
    responder: Option<String>,
    http: &reqwest::Client,
    max_cache_seconds: u64,
) -> Result<(Status, i64, Vec<u8>), String> {
    let issuer = issuer_of(t)?;
    let url = match responder {
        Some(u) => u,
        None => t
            .cert
            .ocsp_responders()
            .ok()
            .and_then(|s| s.iter().next().map(|u| u.to_string()))
            .ok_or("no responder configured and none in the certificate (AIA)")?,
    };
    let id = || OcspCertId::from_cert(MessageDigest::sha1(), &t.cert, &issuer).map_err(|e| e.to_string());
    let mut req = OcspRequest::new().map_err(|e| e.to_string())?;
    req.add_id(id()?).map_err(|e| e.to_string())?;
    let der = req.to_der().map_err(|e| e.to_string())?;
    let answer = http
        .post(&url)
        .header("content-type", "application/ocsp-request")
        .body(der)
        .send()
        .await
        .map_err(|e| format!("responder {url}: {}", crate::problem::error_chain(&e)))?;
    if !answer.status().is_success() {
        return Err(format!("responder {url}: HTTP {}", answer.status().as_u16()));
    }
    // An OCSP response for one certificate is a few kilobytes; a bound keeps a hostile
    // responder from filling memory.
    let body = answer.bytes().await.map_err(|e| format!("responder {url}: {e}"))?;
    if body.len() > 64 * 1024 {
        return Err(format!("responder {url}: answer too large"));
    }
    let resp = OcspResponse::from_der(&body).map_err(|_| format!("responder {url}: not an OCSP response"))?;
    if resp.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(format!("responder {url}: status {}", resp.status().as_raw()));
    }
    let basic = resp
        .basic()
        .map_err(|_| format!("responder {url}: no basic response"))?;
    // Signed by the issuer, or by a responder certificate the issuer issued for OCSP signing.
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    store.add_cert(issuer.clone()).map_err(|e| e.to_string())?;
    let store = store.build();
    let mut certs = Stack::new().map_err(|e| e.to_string())?;
    certs.push(issuer.clone()).map_err(|e| e.to_string())?;
    basic
        .verify(&certs, &store, OcspFlag::empty())
        .map_err(|_| format!("responder {url}: the response's signature does not verify"))?;
    let id = id()?;
    let status = basic
        .find_status(&id)
        .ok_or_else(|| format!("responder {url}: the response does not name the certificate"))?;
    status
        .check_validity(300, None)
        .map_err(|_| format!("responder {url}: the response is not current"))?;
    let now = now_ms();
    let cap = now + (max_cache_seconds * 1000) as i64;
    let until = status.next_update().and_then(millis).unwrap_or(cap).min(cap).max(now);
    let s = match status.status {
        OcspCertStatus::GOOD => Status::Good,
        OcspCertStatus::REVOKED => Status::Revoked {
            since: status
                .revocation_time
                .and_then(millis)
                .map(rfc3339)
                .unwrap_or_else(|| "an unknown time".into()),
        },
        _ => Status::Unknown,
    };
    Ok((s, until, body.to_vec()))
}

/// An ASN.1 GeneralizedTime as milliseconds since the epoch (OpenSSL prints it as
/// `Dec  7 05:00:00 2026 GMT`).
fn millis(t: &openssl::asn1::Asn1GeneralizedTimeRef) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = t.to_string();
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [month, day, time, year, ..] = parts.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let day: u32 = day.parse().ok()?;
    let time = time.split('.').next()?.replace(':', "");
    let at = openssl::asn1::Asn1Time::from_str(&format!("{year}{month:02}{day:02}{time}Z")).ok()?;
    let diff = openssl::asn1::Asn1Time::days_from_now(0).ok()?.diff(&at).ok()?;
    Some(now_ms() + (i64::from(diff.days) * 86_400 + i64::from(diff.secs)) * 1000)
}

/// The certificate's issuer among its role's anchors.
fn issuer_of(t: &Target) -> Result<X509, String> {
    for path in &t.anchors {
        for ca in crate::xmlsec::trust::load_certs(path).unwrap_or_default() {
            let signed = ca.public_key().and_then(|k| t.cert.verify(&k)).unwrap_or(false);
            if signed && ca.subject_name().to_der().ok() == t.cert.issuer_name().to_der().ok() {
                return Ok(ca);
            }
        }
    }
    Err("the certificate's issuer is not among the role's trust anchors".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generalized_time_is_read_as_milliseconds_since_the_epoch() {
        let t = openssl::asn1::Asn1GeneralizedTime::from_str("20300101000000Z").unwrap();
        let ms = millis(&t).unwrap();
        // 2030-01-01T00:00:00Z; the conversion goes through "now" at second precision.
        assert!((ms - 1_893_456_000_000).abs() < 2000, "{ms}");
    }

    #[test]
    fn settings_refuse_a_responder_that_is_no_url_and_bounds_out_of_range() {
        let mut errs = Vec::new();
        Settings {
            responder: Some("ldap://x".into()),
            max_cache_seconds: 0,
            ..Settings::default()
        }
        .check(&mut errs);
        assert_eq!(errs.len(), 2, "{errs:?}");
        let mut errs = Vec::new();
        Settings::default().check(&mut errs);
        assert!(errs.is_empty());
    }

    /// A self-signed certificate (its own issuer) with an AIA OCSP address.
    #[allow(deprecated)] // X509Extension::new_nid: the crate has no AIA builder
    fn with_aia(url: &str) -> X509 {
        use openssl::x509::{X509Builder, X509Extension, X509NameBuilder};
        let key = openssl::pkey::PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "aia test").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        let aia = X509Extension::new_nid(
            None,
            Some(&b.x509v3_context(None, None)),
            openssl::nid::Nid::INFO_ACCESS,
            &format!("OCSP;URI:{url}"),
        )
        .unwrap();
        b.append_extension(aia).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    #[tokio::test]
    async fn without_a_configured_responder_the_certificates_aia_address_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        // Port 9 (discard) on loopback: nothing answers, and the error names the address asked.
        let cert = with_aia("http://127.0.0.1:9/aia-ocsp");
        let anchor = dir.path().join("ca.pem");
        std::fs::write(&anchor, cert.to_pem().unwrap()).unwrap();
        let target = Target {
            cert: cert.clone(),
            role: CertRole::Node,
            anchors: vec![anchor.clone()],
        };
        let http = reqwest::Client::new();
        let err = ask(&target, None, &http, 60).await.unwrap_err();
        assert!(err.contains("http://127.0.0.1:9/aia-ocsp"), "{err}");
        // A configured responder goes first.
        let err = ask(&target, Some("http://127.0.0.1:9/configured".into()), &http, 60)
            .await
            .unwrap_err();
        assert!(err.contains("/configured"), "{err}");
    }

    #[test]
    fn without_an_answer_a_role_is_refused_unless_it_may_soft_fail() {
        let c = Checker::default();
        let fp = [7u8; 32];
        assert!(c.verdict(&fp, CertRole::Node).is_ok(), "mode crl: OCSP is not asked");
        c.configure(
            &Settings {
                mode: Mode::Ocsp,
                soft_fail: vec![CertRole::Authority],
                ..Settings::default()
            },
            false,
        );
        assert!(c.verdict(&fp, CertRole::Node).unwrap_err().contains("not checked"));
        assert!(c.verdict(&fp, CertRole::Authority).is_ok());
        // ocsp-then-crl with CRL files: the CRL check decides.
        c.configure(
            &Settings {
                mode: Mode::OcspThenCrl,
                ..Settings::default()
            },
            true,
        );
        assert!(c.verdict(&fp, CertRole::Node).is_ok());
    }
}
