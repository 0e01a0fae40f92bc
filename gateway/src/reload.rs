//! Reloading a node's configuration without a restart (`SIGHUP`, `POST /admin/api/reload`,
//! `poststelle reload`). The file is read again and everything built from it is checked
//! completely (tokens and roles, keys against their certificates, certificates against their
//! anchors, the TLS contexts) before the new version replaces the old in one step. A new
//! configuration with any problem is refused whole, with every problem listed, and the old
//! one stays in force (`/readyz` says so until a reload succeeds). New connections, requests
//! and jobs take the new version; those in progress finish with the one they started with.
//!
//! What reloads: TLS certificate and key (all listeners and the relay client), the CA file,
//! authority keys, partner entries and their certificates, CRLs, clients and their tokens,
//! admin tokens, limits, retry settings. What only a restart changes is listed in the answer
//! (`restart_needed`) and the old value stays in force: addresses, data folder, store, broker,
//! server bounds, worker and validation thread counts, per-partner concurrency and circuit
//! settings, schemas and adapters, admin TLS on or off, drop folders.

use std::sync::Arc;

use serde_json::json;

use crate::config::Config;
use crate::ctx::{Ctx, Live, Refused};

/// Builds everything a reload replaces from `config`, or every problem found.
pub fn build(config: Arc<Config>, revocation: &Arc<crate::revocation::Checker>) -> Result<Live, Vec<String>> {
    let mut errs = Vec::new();
    let keys = crate::certs::NodeKeys::load(&config).map_err(|e| errs.extend(e)).ok();
    let passphrase = crate::certs::key_passphrase(&config).unwrap_or_default();
    let tls = &config.tls;
    let id = crate::tls::Tls {
        cert: &tls.cert,
        key: &tls.key,
        passphrase: passphrase.as_deref(),
    };
    // The partners with the 2048-bit exception, by the certificate they present.
    let peer_policy = crate::tls::PeerPolicy {
        rsa_2048: Arc::new(
            config
                .partners
                .iter()
                .filter(|p| config.security.allow_rsa_2048.contains(&p.node))
                .flat_map(|p| p.fingerprints.iter().copied())
                .collect(),
        ),
        revocation: Some(revocation.clone()),
    };
    let mut note = |what: &str, e: crate::tls::SetupError| errs.push(format!("{what}: {e}"));
    // The node's own TLS files are reported by the key check already; once is enough.
    let node_tls = keys.is_some();
    // Our node certificate's OCSP answer is stapled on the API and transport listeners.
    let staple = keys.as_ref().and_then(|k| {
        Some(crate::tls::Staple {
            checker: revocation.clone(),
            fingerprint: crate::xmlsec::trust::fingerprint(&k.node.cert).ok()?,
        })
    });
    let api_tls = crate::tls::acceptor(id, &tls.ca, false, Default::default(), staple.clone())
        .map_err(|e| node_tls.then(|| note("tls (API listener)", e)))
        .ok();
    let transport_tls = crate::tls::acceptor(id, &tls.ca, true, peer_policy.clone(), staple)
        .map_err(|e| node_tls.then(|| note("tls (transport listener)", e)))
        .ok();
    let admin_tls = match &config.admin.tls {
        Some((cert, key)) => {
            let admin_id = crate::tls::Tls { cert, key, ..id };
            match crate::tls::acceptor(admin_id, &tls.ca, false, Default::default(), None) {
                Ok(a) => Some(Some(Arc::new(a))),
                Err(e) => {
                    note("admin.tls", e);
                    None
                }
            }
        }
        None => Some(None),
    };
    let partner_certs: Vec<(String, Vec<[u8; 32]>)> = config
        .partners
        .iter()
        .flat_map(|p| p.transport_urls.iter().map(|u| (u.clone(), p.fingerprints.clone())))
        .collect();
    let relay_client = crate::tls::relay_client(id, &tls.ca, peer_policy, &partner_certs, config.relay.connect_timeout)
        .map_err(|e| node_tls.then(|| note("tls (relay client)", e)))
        .ok();
    match (keys, api_tls, transport_tls, admin_tls, relay_client) {
        (Some(keys), Some(api_tls), Some(transport_tls), Some(admin_tls), Some(relay_client)) if errs.is_empty() => {
            Ok(Live {
                certificates: Arc::new(crate::certs::load_certificates(&config)),
                config,
                keys: Arc::new(keys),
                relay_client,
                api_tls: Arc::new(api_tls),
                transport_tls: Arc::new(transport_tls),
                admin_tls,
                since: crate::store::now_millis(),
            })
        }
        _ => Err(errs),
    }
}

/// The settings that differ between `old` and `new` but take effect only at a restart.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    fn differ(a: &impl std::fmt::Debug, b: &impl std::fmt::Debug) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let (r, n) = (&old.relay, &new.relay);
    let drop_dirs = |c: &Config| -> Vec<(String, Option<std::path::PathBuf>)> {
        c.clients
            .iter()
            .filter(|c| c.drop_dir.is_some())
            .map(|c| (c.name.clone(), c.drop_dir.as_ref().map(|d| d.root.clone())))
            .collect()
    };
    [
        ("node.name", old.node_name != new.node_name),
        ("node.data_dir", old.data_dir != new.data_dir),
        (
            "listen",
            (old.api_addr, old.transport_addr) != (new.api_addr, new.transport_addr),
        ),
        ("store", differ(&old.store, &new.store)),
        ("amqp", differ(&old.amqp, &new.amqp)),
        ("server", differ(&old.server, &new.server)),
        (
            "relay (workers, validation threads and queue, per-partner concurrency, circuit)",
            (
                r.workers,
                r.validation_threads,
                r.validation_queue,
                r.per_partner_concurrency,
            ) != (
                n.workers,
                n.validation_threads,
                n.validation_queue,
                n.per_partner_concurrency,
            ) || (r.circuit_failures, r.circuit_open) != (n.circuit_failures, n.circuit_open),
        ),
        (
            "schemas and adapters",
            (&old.schema_root, &old.xoev_root, &old.adapter_dirs)
                != (&new.schema_root, &new.xoev_root, &new.adapter_dirs),
        ),
        (
            "admin.tls (on or off)",
            old.admin.tls.is_some() != new.admin.tls.is_some(),
        ),
        ("clients' drop folders", drop_dirs(old) != drop_dirs(new)),
    ]
    .into_iter()
    .filter_map(|(what, changed)| changed.then_some(what))
    .collect()
}

/// A reload that took effect.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// Changed settings that keep their old value until the next restart.
    pub restart_needed: Vec<&'static str>,
}

/// Reads the node's configuration file again and puts it in force, or refuses it whole with
/// every problem (the old version stays). `by` names who asked (an admin token's name, or
/// `SIGHUP`) for the audit log.
pub async fn reload(ctx: &Ctx, by: &str) -> Result<Reloaded, Vec<String>> {
    // One reload at a time: the second builds on what the first put in force.
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE.lock().await;
    let old = ctx.config();
    let built = {
        let old = old.clone();
        let revocation = ctx.revocation.clone();
        tokio::task::spawn_blocking(move || {
            let path = old
                .source
                .clone()
                .ok_or_else(|| vec!["this node was started without a configuration file".to_owned()])?;
            let mut new = Config::load(&path).map_err(|e| e.0)?;
            // The admin address may be this process's own (`serve --admin`); it is not reloaded.
            new.admin_addr = old.admin_addr;
            let restart = restart_needed(&old, &new);
            Ok((build(Arc::new(new), &revocation)?, restart))
        })
        .await
        .unwrap_or_else(|e| Err(vec![format!("the reload failed: {e}")]))
    };
    let set_refused = |r: Option<Refused>| *ctx.reload_refused.lock().unwrap_or_else(|e| e.into_inner()) = r;
    match built {
        Ok((live, restart_needed)) => {
            ctx.replace(live);
            set_refused(None);
            crate::telemetry::reload("applied");
            tracing::info!(by, ?restart_needed, "configuration reloaded");
            ctx.audit
                .note(by, "config-reloaded", json!({"restart_needed": restart_needed}))
                .await;
            Ok(Reloaded { restart_needed })
        }
        Err(problems) => {
            set_refused(Some(Refused {
                at: crate::store::now_millis(),
                problems: problems.clone(),
            }));
            crate::telemetry::reload("refused");
            for p in &problems {
                tracing::warn!(by, problem = %p, "configuration reload refused; the loaded one stays in force");
            }
            ctx.audit
                .note(by, "config-reload-refused", json!({"problems": problems.len()}))
                .await;
            Err(problems)
        }
    }
}
