//! Operator commands over a node's admin API: `poststelle status`, `queues`, `certs`,
//! `messages list|show|payload|retry|cancel` and `dlq replay`. Tables for people, `--json` for scripts. The node is named either
//! by `--admin URL --token T` or by `--network DIR/network.json --node NAME`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Which node's admin API, and how to authenticate.
#[derive(Debug, Args)]
pub struct Target {
    /// The admin listener, e.g. http://127.0.0.1:7403
    #[arg(long, global = true)]
    admin: Option<String>,
    /// The admin token (`[admin] token`).
    #[arg(long, global = true)]
    token: Option<String>,
    /// The CA (PEM) that an https admin listener's certificate chains to (with `--network`:
    /// the network's CA).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Take the admin URL and token from a network.json written by `network init` …
    #[arg(long, global = true)]
    network: Option<PathBuf>,
    /// … for this node.
    #[arg(long, global = true)]
    node: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Messages, oldest first.
    List {
        /// State(s), comma-separated, e.g. failed or accepted,sealed
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        partner: Option<String>,
        /// inbound or outbound
        #[arg(long)]
        direction: Option<String>,
        /// The XÖV message type code.
        #[arg(long = "type")]
        message_type: Option<String>,
        /// The XÖV message UUID.
        #[arg(long)]
        uuid: Option<String>,
        /// Created at or after (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Created before (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One message with its timeline.
    Show { id: String },
    /// A message's payload; the reason is written to the node's audit log.
    Payload {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Send a dead letter (`failed`) back to the relay.
    Retry { id: String },
    /// Cancel a message not yet sent (`accepted`, `sealed`, `failed`).
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Retry every dead letter matching the filter.
    Replay {
        #[arg(long)]
        partner: Option<String>,
        #[arg(long = "type")]
        message_type: Option<String>,
        /// RFC 3339
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
    },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    json: bool,
}

impl Api {
    fn new(t: Target) -> anyhow::Result<Api> {
        let mut ca = t.ca;
        let (base, token) = match (t.admin, t.token, t.network, t.node) {
            (Some(a), Some(tok), None, None) => (a, tok),
            (None, tok, Some(net), Some(node)) => {
                let file: crate::network::NetworkFile = serde_json::from_slice(&std::fs::read(&net)?)?;
                let n = file
                    .nodes
                    .into_iter()
                    .find(|n| n.name == node)
                    .ok_or_else(|| anyhow::anyhow!("{} has no node {node}", net.display()))?;
                ca.get_or_insert(n.ca);
                (n.admin, tok.unwrap_or(n.admin_token))
            }
            _ => anyhow::bail!("name the node with --admin URL --token T, or --network FILE --node NAME"),
        };
        let http = match ca.filter(|_| base.starts_with("https://")) {
            Some(ca) => crate::tls::trusting(&ca).map_err(|e| anyhow::anyhow!("--ca {}: {e}", ca.display()))?,
            None => reqwest::Client::builder(),
        };
        Ok(Api {
            http: http.timeout(std::time::Duration::from_secs(30)).build()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
            json: t.json,
        })
    }

    /// Calls the API; an error answer becomes the problem's code and detail.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "{} {}: {}",
                status.as_u16(),
                v["code"].as_str().unwrap_or("error"),
                v["detail"].as_str().unwrap_or("")
            );
        }
        Ok(v)
    }
}

fn table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Percent-encodes a query value (RFC 3339 times carry `+` and `:`).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A further table after a blank line, unless it has no rows.
fn section(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows);
    if all.len() > 1 {
        println!();
        table(&all);
    }
}

/// Seconds as people read them: `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`.
fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

/// `poststelle status`: the node at a glance (exit 1 when there are dead letters or a
/// certificate expires within 30 days, so that a cron job can alert on it).
pub async fn status(target: Target) -> anyhow::Result<ExitCode> {
    let api = Api::new(target)?;
    let v = api.call(reqwest::Method::GET, "/admin/api/status", None).await?;
    let attention = v["dead_letters"].as_u64().unwrap_or(0) > 0
        || v["next_certificate_expiry"]["days_left"]
            .as_i64()
            .is_some_and(|d| d < 30);
    if api.json {
        println!("{v}");
    } else {
        println!(
            "node {} (version {}), up {}",
            s(&v["node"]),
            s(&v["version"]),
            age(v["uptime_seconds"].as_u64().unwrap_or(0))
        );
        let out = &v["counts"]["outbound"];
        println!(
            "outbound: {} delivered, {} in flight, {} dead letters, {} rejected",
            out["delivered"].as_u64().unwrap_or(0),
            v["in_flight"].as_u64().unwrap_or(0),
            v["dead_letters"].as_u64().unwrap_or(0),
            v["rejected"].as_u64().unwrap_or(0),
        );
        println!(
            "inbound:  {} delivered, {} waiting for the client",
            v["counts"]["inbound"]["delivered"].as_u64().unwrap_or(0),
            v["inbound_pending"].as_u64().unwrap_or(0),
        );
        let mut rows = vec![
            [
                "partner",
                "circuit",
                "in flight",
                "errors",
                "last success",
                "last error",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for p in v["partners"].as_array().into_iter().flatten() {
            rows.push(vec![
                s(&p["partner"]),
                s(&p["circuit"]),
                p["in_flight"].to_string(),
                format!("{:.0} %", p["error_rate"].as_f64().unwrap_or(0.0) * 100.0),
                s(&p["last_success"]),
                s(&p["last_error"]),
            ]);
        }
        table(&rows);
        let mut rows = vec![
            ["process", "host", "pid", "started", "last seen", "state"]
                .map(String::from)
                .to_vec(),
        ];
        for p in v["processes"].as_array().into_iter().flatten() {
            let me = p["id"] == v["instance"];
            rows.push(vec![
                format!("{}{}", s(&p["id"]), if me { " (answered)" } else { "" }),
                s(&p["host"]),
                p["pid"].to_string(),
                s(&p["started"]),
                s(&p["last_seen"]),
                if p["alive"] == true { "alive" } else { "gone" }.to_owned(),
            ]);
        }
        table(&rows);
        if let Some(c) = v["next_certificate_expiry"].as_object() {
            println!(
                "next certificate to expire: {} {} in {} days",
                s(&c["role"]),
                s(&c["name"]),
                c["days_left"]
            );
        }
    }
    Ok(if attention {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `GET path`, printed as the API's JSON (`--json`) or as a table of the items under `key`:
/// `header`, then `row` of each item (`empty` when there are none).
async fn list_table(
    target: Target,
    path: &str,
    key: &str,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
    empty: &str,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(target)?;
    let v = api.call(reqwest::Method::GET, path, None).await?;
    if api.json {
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    rows.extend(v[key].as_array().into_iter().flatten().map(row));
    if rows.len() == 1 {
        println!("{empty}");
    } else {
        table(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// `poststelle queues`: what waits where, and since when; then the drop folders and the
/// partners' attachment streams waiting here, if any.
pub async fn queues(target: Target) -> anyhow::Result<ExitCode> {
    let api = Api::new(target)?;
    let v = api.call(reqwest::Method::GET, "/admin/api/queues", None).await?;
    if api.json {
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["direction", "partner", "status", "depth", "oldest"]
            .map(String::from)
            .to_vec(),
    ];
    rows.extend(v["queues"].as_array().into_iter().flatten().map(|q| {
        vec![
            s(&q["direction"]),
            s(&q["partner"]),
            s(&q["status"]),
            q["depth"].to_string(),
            age(q["oldest_age_seconds"].as_u64().unwrap_or(0)),
        ]
    }));
    if rows.len() == 1 {
        println!("all queues are empty");
    } else {
        table(&rows);
    }
    let folders = v["drop_folders"].as_array().cloned().unwrap_or_default();
    section(
        &["drop folder of", "waiting in out/", "oldest", "rejected", "path"],
        folders.iter().map(|f| {
            vec![
                s(&f["client"]),
                f["waiting"].to_string(),
                age(f["oldest_age_seconds"].as_u64().unwrap_or(0)),
                f["rejected"].to_string(),
                s(&f["path"]),
            ]
        }),
    );
    let streams = v["partner_streams"].as_array().cloned().unwrap_or_default();
    section(
        &["streams waiting from", "streams", "bytes", "oldest"],
        streams.iter().map(|p| {
            vec![
                s(&p["partner"]),
                p["streams"].to_string(),
                p["bytes"].to_string(),
                age(p["oldest_age_seconds"].as_u64().unwrap_or(0)),
            ]
        }),
    );
    Ok(ExitCode::SUCCESS)
}

/// `poststelle reload`: the node reloads its configuration; a refusal prints every problem.
pub async fn reload(target: Target) -> anyhow::Result<ExitCode> {
    let api = Api::new(target)?;
    let r = api
        .http
        .post(format!("{}/admin/api/reload", api.base))
        .bearer_auth(&api.token)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if api.json {
        println!("{v}");
    }
    if status.is_success() {
        if !api.json {
            println!("reloaded");
            for s in v["restart_needed"].as_array().into_iter().flatten() {
                println!(
                    "changed, takes effect at the next restart: {}",
                    s.as_str().unwrap_or_default()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !api.json {
        eprintln!(
            "{} {}: {}",
            status.as_u16(),
            v["code"].as_str().unwrap_or("error"),
            v["detail"].as_str().unwrap_or("")
        );
        for e in v["errors"].as_array().into_iter().flatten() {
            eprintln!("  {}", e["message"].as_str().unwrap_or_default());
        }
    }
    Ok(ExitCode::from(1))
}

/// `poststelle certs`: every configured certificate, the one expiring first first.
pub async fn certs(target: Target) -> anyhow::Result<ExitCode> {
    list_table(
        target,
        "/admin/api/certificates",
        "certificates",
        &["days left", "role", "name", "not after", "revocation", "subject"],
        |c| {
            vec![
                c["days_left"].to_string(),
                s(&c["role"]),
                s(&c["name"]),
                s(&c["not_after"]),
                c["revocation"]["status"].as_str().unwrap_or("-").to_owned(),
                s(&c["subject"]),
            ]
        },
        "no certificates",
    )
    .await
}

fn s(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into())
}

pub async fn messages(target: Target, command: MessagesCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(target)?;
    let v = match &command {
        MessagesCommand::List {
            status,
            partner,
            direction,
            message_type,
            uuid,
            since,
            until,
            limit,
        } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("status", status),
                ("partner", partner),
                ("direction", direction),
                ("type", message_type),
                ("uuid", uuid),
                ("since", since),
                ("until", until),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", encode(v)));
                }
            }
            if let Some(l) = limit {
                q.push(format!("limit={l}"));
            }
            api.call(
                reqwest::Method::GET,
                &format!("/admin/api/messages?{}", q.join("&")),
                None,
            )
            .await?
        }
        MessagesCommand::Show { id } => {
            api.call(reqwest::Method::GET, &format!("/admin/api/messages/{id}"), None)
                .await?
        }
        MessagesCommand::Retry { id } => {
            api.call(reqwest::Method::POST, &format!("/admin/api/messages/{id}/retry"), None)
                .await?
        }
        MessagesCommand::Payload { id, reason } => {
            api.call(
                reqwest::Method::POST,
                &format!("/admin/api/messages/{id}/payload"),
                Some(json!({ "reason": reason })),
            )
            .await?
        }
        MessagesCommand::Cancel { id } => {
            api.call(reqwest::Method::POST, &format!("/admin/api/messages/{id}/cancel"), None)
                .await?
        }
    };
    if api.json {
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    match command {
        MessagesCommand::List { .. } => {
            let mut rows = vec![
                ["id", "dir", "status", "partner", "type", "updated", "error"]
                    .map(String::from)
                    .to_vec(),
            ];
            for m in v["messages"].as_array().into_iter().flatten() {
                rows.push(vec![
                    s(&m["id"]),
                    s(&m["direction"]),
                    s(&m["status"]),
                    s(&m["partner"]),
                    s(&m["message_type"]),
                    s(&m["updated"]),
                    s(&m["error"]["code"]),
                ]);
            }
            table(&rows);
        }
        MessagesCommand::Show { .. } => {
            for k in [
                "id",
                "direction",
                "status",
                "partner",
                "message_type",
                "xoev_uuid",
                "author",
                "reader",
                "created",
            ] {
                println!("{k:<13}{}", s(&v[k]));
            }
            if v["error"].is_object() {
                println!(
                    "{:<13}{}: {}",
                    "error",
                    s(&v["error"]["code"]),
                    s(&v["error"]["detail"])
                );
            }
            let mut rows = vec![vec!["at".to_owned(), "status".to_owned(), "detail".to_owned()]];
            for e in v["timeline"].as_array().into_iter().flatten() {
                rows.push(vec![s(&e["at"]), s(&e["status"]), s(&e["detail"])]);
            }
            println!();
            table(&rows);
        }
        MessagesCommand::Payload { .. } => println!("{}", s(&v["payload"])),
        MessagesCommand::Retry { .. } | MessagesCommand::Cancel { .. } => {
            println!("{}: {}", s(&v["id"]), s(&v["status"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq(target: Target, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(target)?;
    let DlqCommand::Replay {
        partner,
        message_type,
        since,
        until,
    } = command;
    let filter = json!({"partner": partner, "type": message_type, "since": since, "until": until});
    let filter: serde_json::Map<String, Value> = filter
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let v = api
        .call(
            reqwest::Method::POST,
            "/admin/api/dlq/replay",
            Some(Value::Object(filter)),
        )
        .await?;
    if api.json {
        println!("{v}");
    } else {
        let replayed = v["replayed"].as_array().map_or(0, Vec::len);
        for id in v["replayed"].as_array().into_iter().flatten() {
            println!("{}: retried", s(id));
        }
        for sk in v["skipped"].as_array().into_iter().flatten() {
            println!("{}: skipped: {}", s(&sk["id"]), s(&sk["reason"]));
        }
        println!("{replayed} dead letters replayed");
    }
    Ok(ExitCode::SUCCESS)
}
