//! `poststelle network init`: a ready local network of nodes that know each other.
//!
//! Writes the transport CA `DIR/ca.pem` and the content CA `DIR/content-ca.pem` (+ keys), per
//! node `DIR/<node>/{poststelle.toml,node.pem,node.key}` and its authorities' certificates and
//! keys `DIR/<node>/authorities/<id>.{pem,key}`, and `DIR/network.json` (PRODUCT.md) for scripts
//! and tests. Ports are picked free on 127.0.0.1.

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
    let mut b = [0u8; 24];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(crate::envelope::hex(&b))
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
}

/// Ports for each node: (api, transport, admin). `fixed` gives 7401.. instead of free ports.
fn ports(n: usize, fixed: bool) -> anyhow::Result<Vec<[u16; 3]>> {
    if fixed {
        return Ok((0..n)
            .map(|i| {
                let base = 7401 + 10 * i as u16;
                [base, base + 1, base + 2]
            })
            .collect());
    }
    // Hold every listener until all are picked, so no port is handed out twice.
    let mut held = Vec::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let mut p = [0u16; 3];
        for slot in &mut p {
            let l = TcpListener::bind("127.0.0.1:0")?;
            *slot = l.local_addr()?.port();
            held.push(l);
        }
        out.push(p);
    }
    Ok(out)
}

/// Writes a network of `n` nodes into `dir` and returns its description.
pub fn init(dir: &Path, n: usize, fixed_ports: bool) -> anyhow::Result<NetworkFile> {
    init_with(dir, n, fixed_ports, None)
}

/// Like [`init`]; with a broker URL every node gets an `[amqp]` section, and each client an
/// intake queue and an inbox queue (a publish confirmed by the broker counts as delivered).
/// Queue names carry a random network id, so that networks sharing a broker stay apart.
pub fn init_with(dir: &Path, n: usize, fixed_ports: bool, amqp_url: Option<&str>) -> anyhow::Result<NetworkFile> {
    let net_id = {
        let mut b = [0u8; 4];
        openssl::rand::rand_bytes(&mut b)?;
        crate::envelope::hex(&b)
    };
    anyhow::ensure!(n >= 1, "a network has at least one node");
    std::fs::create_dir_all(dir)?;
    let dir = std::path::absolute(dir)?;
    let ca = crate::pki::new_ca("Poststelle development CA")?;
    ca.write(&dir, "ca")?;
    let content_ca = crate::pki::new_ca("Poststelle development content CA")?;
    content_ca.write(&dir, "content-ca")?;
    let ports = ports(n, fixed_ports)?;
    let names: Vec<String> = (0..n).map(node_name).collect();
    for (i, name) in names.iter().enumerate() {
        let node_dir = dir.join(name);
        std::fs::create_dir_all(node_dir.join("authorities"))?;
        crate::pki::new_node_cert(&ca, name)?.write(&node_dir, "node")?;
        let authority = authority_of(i);
        crate::pki::new_authority_cert(&content_ca, &authority)?.write(
            &node_dir.join("authorities"),
            &crate::pki::authority_file_name(&authority),
        )?;
    }
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
                transport_url: format!("https://127.0.0.1:{}/v1/transport", ports[j][1]),
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
            admin: RawAdmin {
                token: admin_token.clone(),
            },
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
            }],
            clients: vec![RawClient {
                name: format!("fachverfahren-{name}"),
                authority: authority.clone(),
                token: client_token.clone(),
                message_types: vec!["*".into()],
                push_url: None,
                deliver_as: None,
                amqp_intake: amqp.as_ref().map(|a| a.intake.clone()),
                amqp_inbox: amqp.as_ref().and_then(|a| a.inbox.get(&authority).cloned()),
                delivered_on_confirm: amqp.is_some(),
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
            }],
            ca: dir.join("ca.pem"),
            amqp,
        });
    }
    let file = NetworkFile { nodes };
    std::fs::write(dir.join("network.json"), serde_json::to_vec_pretty(&file)?)?;
    Ok(file)
}
