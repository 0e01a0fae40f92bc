//! `poststelle network init`: a ready local network of nodes that know each other.
//!
//! Writes the transport CA `DIR/ca.pem` and the content CA `DIR/content-ca.pem` (+ keys), per
//! node `DIR/<node>/{poststelle.toml,node.pem,node.key}` and its authorities' certificates and
//! keys `DIR/<node>/authorities/<id>.{pem,key}`, and `DIR/network.json` (PRODUCT.md) for scripts
//! and tests. Listener ports on 127.0.0.1 are picked outside the kernel's ephemeral port range
//! (see [`Ports`]).

use crate::pki::KeyType;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{
    RawAdmin, RawAuthority, RawClient, RawConfig, RawListen, RawNode, RawPartner, RawSecurity, RawTls,
};

/// DVDV-style authorities given to the first nodes (a, b, c, …); the demo fixtures use a → b.
const AUTHORITIES: &[&str] = &[
    "psw:01003110",
    "psw:09162000",
    "psw:05315000",
    "psw:06411000",
    "psw:08111000",
];

/// The authority served by the `i`-th node (0-based).
pub fn authority_of(i: usize) -> String {
    AUTHORITIES
        .get(i)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("psw:99{i:06}"))
}

fn node_name(i: usize) -> String {
    if i < 26 {
        ((b'a' + i as u8) as char).to_string()
    } else {
        format!("n{i}")
    }
}

fn token() -> anyhow::Result<String> {
    Ok(crate::access::new_token()?.0)
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NetworkFile {
    pub nodes: Vec<NetworkNode>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NetworkNode {
    pub name: String,
    pub config: PathBuf,
    pub api: String,
    pub admin: String,
    pub admin_token: String,
    pub authorities: Vec<String>,
    pub clients: Vec<NetworkClient>,
    pub ca: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<NetworkAmqp>,
}

/// Where scripts find a node's queues (`network init --amqp`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NetworkAmqp {
    pub url: String,
    /// The intake queue of the node's client.
    pub intake: String,
    /// Inbox queue per local authority.
    pub inbox: BTreeMap<String, String>,
    pub dead_letter_queue: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NetworkClient {
    pub authority: String,
    pub token: String,
    /// The client's drop folder (`network init --file-drop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_dir: Option<PathBuf>,
}

/// Where `network init` puts the nodes' listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// 7401, 7402, 7403 for the first node, +10 for each next one (`serve` without `--config`).
    Fixed,
    /// Free ports picked at random from [`port_ranges`]`().0`.
    Free,
    /// Consecutive ports from this one (`--base-port`), each checked free.
    From(u16),
}

/// The kernel's range of source ports for outbound connections
/// (`/proc/sys/net/ipv4/ip_local_port_range`). A listener port inside it may be taken by any
/// outbound connection in the gap between `network init` and the node's start — the node
/// then cannot bind ("Address already in use"), so `network init` never picks one there.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Two disjoint port ranges outside the ephemeral range: the upper half of the largest gap is
/// where [`Ports::Free`] picks, the lower half is left to callers that hand out ports
/// themselves with [`Ports::From`] (the test harness), so that the two never meet.
pub fn port_ranges() -> (std::ops::Range<u16>, std::ops::Range<u16>) {
    let (lo, hi) = ephemeral_range();
    let below = 1024..lo.max(1024);
    let above = hi.saturating_add(1).max(1024)..u16::MAX;
    let gap = if below.len() >= above.len() { below } else { above };
    let mid = gap.start + (gap.end - gap.start) / 2;
    (mid..gap.end, gap.start..mid)
}

/// Ports for each node: (api, transport, admin).
fn ports(n: usize, choice: Ports) -> anyhow::Result<Vec<[u16; 3]>> {
    let mut out = Vec::new();
    // Hold every listener until all are picked, so no port is handed out twice.
    let mut held = Vec::new();
    match choice {
        Ports::Fixed => {
            for i in 0..n {
                let base = 7401 + 10 * i as u16;
                out.push([base, base + 1, base + 2]);
            }
        }
        Ports::From(base) => {
            for i in 0..3 * n {
                let port = u16::try_from(base as usize + i)
                    .map_err(|_| anyhow::anyhow!("--base-port {base}: {} ports do not fit below 65536", 3 * n))?;
                let l = TcpListener::bind(("127.0.0.1", port))
                    .map_err(|e| anyhow::anyhow!("port {port} (from --base-port {base}) is not free: {e}"))?;
                held.push(l);
            }
            for i in 0..n {
                let p = base + 3 * i as u16;
                out.push([p, p + 1, p + 2]);
            }
        }
        Ports::Free => {
            let range = port_ranges().0;
            anyhow::ensure!(
                range.len() >= 64,
                "no room for listener ports outside the ephemeral port range {:?}",
                ephemeral_range()
            );
            for _ in 0..n {
                let mut p = [0u16; 3];
                for slot in &mut p {
                    let mut tries = 0;
                    *slot = loop {
                        let mut r = [0u8; 2];
                        openssl::rand::rand_bytes(&mut r)?;
                        let port = range.start + u16::from_le_bytes(r) % range.len() as u16;
                        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                            held.push(l);
                            break port;
                        }
                        tries += 1;
                        anyhow::ensure!(tries < 1000, "no free port found in {range:?}");
                    };
                }
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// The development PKI of a network: the transport CA and the content CA in `dir`, and for
/// each node its node certificate and its authority's certificate.
fn write_pki(dir: &Path, names: &[String], kind: KeyType) -> anyhow::Result<()> {
    let ca = crate::pki::new_ca("Poststelle development CA", kind)?;
    ca.write(dir, "ca")?;
    let content_ca = crate::pki::new_ca("Poststelle development content CA", kind)?;
    content_ca.write(dir, "content-ca")?;
    for (i, name) in names.iter().enumerate() {
        let node_dir = dir.join(name);
        std::fs::create_dir_all(node_dir.join("authorities"))?;
        crate::pki::new_node_cert(&ca, name, kind)?.write(&node_dir, "node")?;
        let authority = authority_of(i);
        crate::pki::new_authority_cert(&content_ca, &authority, kind)?.write(
            &node_dir.join("authorities"),
            &crate::pki::authority_file_name(&authority),
        )?;
    }
    Ok(())
}

/// `[admin]` with one token, by its hash: an `auditor` named `admin`.
fn hashed_admin(token: &str) -> RawAdmin {
    RawAdmin {
        tokens: vec![crate::config::RawAdminToken {
            name: "admin".into(),
            role: "auditor".into(),
            token: None,
            token_sha256: Some(crate::access::Secret::of(token).hex()),
        }],
        ..RawAdmin::default()
    }
}

/// A node's `[store]`: SQLite in its data folder, or PostgreSQL at `store_url` in a schema of
/// its own.
fn store_settings(store_url: Option<&str>, node: &str) -> crate::config::StoreSettings {
    let default = crate::config::StoreSettings::default();
    match store_url {
        Some(url) => crate::config::StoreSettings {
            url: Some(url.to_owned()),
            schema: format!("poststelle_{node}"),
            ..default
        },
        None => default,
    }
}

/// Writes a network of `n` nodes into `dir` and returns its description.
pub fn init(dir: &Path, n: usize, ports: Ports) -> anyhow::Result<NetworkFile> {
    init_with(dir, n, ports, None, None, KeyType::Rsa, false)
}

/// Like [`init`]; with a broker URL every node gets an `[amqp]` section, and each client an
/// intake queue and an inbox queue (a publish confirmed by the broker counts as delivered).
/// Queue names carry a random network id, so that networks sharing a broker stay apart. With a
/// PostgreSQL URL every node keeps its store there, in a schema of its own (`poststelle_<node>`).
/// `kind` chooses the keys: RSA-3072, or EC P-256 (ECDSA signatures, ECDH-ES encryption).
/// With `file_drop` each client gets a drop folder, `<node>/drop`.
pub fn init_with(
    dir: &Path,
    n: usize,
    port_choice: Ports,
    amqp_url: Option<&str>,
    store_url: Option<&str>,
    kind: KeyType,
    file_drop: bool,
) -> anyhow::Result<NetworkFile> {
    let net_id = {
        let mut b = [0u8; 4];
        openssl::rand::rand_bytes(&mut b)?;
        crate::envelope::hex(&b)
    };
    anyhow::ensure!(n >= 1, "a network has at least one node");
    std::fs::create_dir_all(dir)?;
    let dir = std::path::absolute(dir)?;
    let ports = ports(n, port_choice)?;
    let names: Vec<String> = (0..n).map(node_name).collect();
    write_pki(&dir, &names, kind)?;
    let authority_cert = |node: &str, authority: &str| {
        PathBuf::from(format!(
            "../{node}/authorities/{}.pem",
            crate::pki::authority_file_name(authority)
        ))
    };
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node_dir = dir.join(name);
        let authority = authority_of(i);
        let client_token = token()?;
        let admin_token = token()?;
        let [api, transport, admin] = ports[i];
        let amqp = amqp_url.map(|url| NetworkAmqp {
            url: url.to_owned(),
            intake: format!("poststelle.{net_id}.{name}.intake"),
            inbox: [(
                authority.clone(),
                format!("poststelle.{net_id}.{name}.inbox.{authority}"),
            )]
            .into(),
            dead_letter_queue: format!("poststelle.{net_id}.{name}.dead"),
        });
        let partners = names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, other)| RawPartner {
                node: other.clone(),
                transport_url: format!("https://127.0.0.1:{}/v1/transport", ports[j][1]).into(),
                // With a broker, partners are reached through their transport queues.
                amqp_queue: amqp_url.map(|_| format!("poststelle.{net_id}.{other}.transport")),
                certificate: PathBuf::from(format!("../{other}/node.pem")),
                authorities: vec![authority_of(j)],
                authority_certificates: [(authority_of(j), authority_cert(other, &authority_of(j)))].into(),
            })
            .collect();
        let raw = RawConfig {
            node: RawNode {
                name: name.clone(),
                data_dir: PathBuf::from("data"),
            },
            listen: RawListen {
                api: format!("127.0.0.1:{api}"),
                transport: format!("127.0.0.1:{transport}"),
                admin: format!("127.0.0.1:{admin}"),
            },
            tls: RawTls {
                ca: PathBuf::from("../ca.pem"),
                cert: PathBuf::from("node.pem"),
                key: PathBuf::from("node.key"),
            },
            // Configs hold only the tokens' hashes; the tokens themselves go to network.json.
            admin: hashed_admin(&admin_token),
            security: RawSecurity {
                content_ca: Some(PathBuf::from("../content-ca.pem")),
                ..RawSecurity::default()
            },
            authorities: vec![RawAuthority {
                id: authority.clone(),
                name: format!("Authority of node {name}"),
                certificate: authority_cert(name, &authority),
                key: PathBuf::from(format!(
                    "authorities/{}.key",
                    crate::pki::authority_file_name(&authority)
                )),
                ..RawAuthority::default()
            }],
            clients: vec![RawClient {
                name: format!("fachverfahren-{name}"),
                authority: authority.clone(),
                token: String::new(),
                token_sha256: Some(crate::access::Secret::of(&client_token).hex()),
                message_types: vec!["*".into()],
                push_url: None,
                deliver_as: None,
                amqp_intake: amqp.as_ref().map(|a| a.intake.clone()),
                delivered_on_confirm: amqp.is_some() && !file_drop,
                // A drop folder takes the client's deliveries; its intake queue stays.
                amqp_inbox: amqp
                    .as_ref()
                    .and_then(|a| a.inbox.get(&authority).cloned())
                    .filter(|_| !file_drop),
                drop_dir: file_drop.then(|| PathBuf::from("drop")),
                drop_poll_ms: None,
            }],
            partners,
            amqp: amqp.as_ref().map(|a| crate::config::Amqp {
                url: a.url.clone(),
                events_exchange: "poststelle.events".into(),
                dead_letter_exchange: format!("poststelle.{net_id}.{name}.dlx"),
                dead_letter_queue: a.dead_letter_queue.clone(),
                prefetch: 16,
                delivery_limit: 5,
                transport_queue: Some(format!("poststelle.{net_id}.{name}.transport")),
            }),
            store: store_settings(store_url, name),
            ..RawConfig::default()
        };
        let config_path = node_dir.join("poststelle.toml");
        let text = format!(
            "# Poststelle node {name}, written by `poststelle network init`.\n\
             # Relative paths are relative to this file. Start with: poststelle serve --config {}\n\n{}",
            config_path.display(),
            toml::to_string_pretty(&raw)?
        );
        std::fs::write(&config_path, text)?;
        nodes.push(NetworkNode {
            name: name.clone(),
            config: config_path,
            api: format!("https://127.0.0.1:{api}"),
            admin: format!("http://127.0.0.1:{admin}"),
            admin_token,
            authorities: vec![authority.clone()],
            clients: vec![NetworkClient {
                authority,
                token: client_token,
                drop_dir: file_drop.then(|| node_dir.join("drop")),
            }],
            ca: dir.join("ca.pem"),
            amqp,
        });
    }
    let file = NetworkFile { nodes };
    std::fs::write(dir.join("network.json"), serde_json::to_vec_pretty(&file)?)?;
    Ok(file)
}
