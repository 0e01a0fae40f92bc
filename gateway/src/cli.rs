//! The command line (`poststelle …`): parses arguments, sets up tracing, runs, maps to exit codes.
//! `anyhow` stops here; everything below returns typed errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "poststelle",
    version,
    about = "Inter-agency XML messaging gateway (XÖV / OSCI / XTA)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a throw-away two-node network in-process and send the demo fixtures through it.
    Demo,
    /// Local networks.
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// Run a node (without --config: one local node on embedded defaults in ./poststelle-data).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a config file and print every problem at once.
    CheckConfig { file: PathBuf },
    /// Validate messages offline: `file: valid (type)` or `file:LINE:COL: reason` per error.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Folder with the official XBeteiligung 1.2 schemas (xbeteiligung.xsd).
        #[arg(long)]
        xbeteiligung: Option<PathBuf>,
        /// OASIS XML catalog(s) for remote schema imports.
        #[arg(long = "catalog")]
        catalogs: Vec<PathBuf>,
        /// Machine-readable output, one JSON object per file.
        #[arg(long)]
        json: bool,
    },
    /// XML Signature and Encryption on files (the node's own implementation and profile).
    Xml {
        #[command(subcommand)]
        command: crate::xmlsec::tool::XmlCommand,
    },
    /// Submit files to a node as a legacy system would; prints one id per file.
    Send {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The node's client API, e.g. https://127.0.0.1:7401
        #[arg(long)]
        node: String,
        #[arg(long)]
        token: String,
        /// CA certificate to trust for the node (PEM).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Operators: list, show, retry or cancel messages over a node's admin API.
    Messages {
        #[command(subcommand)]
        command: crate::ops::MessagesCommand,
        #[command(flatten)]
        target: crate::ops::Target,
    },
    /// Operators: dead letters (messages in state `failed`).
    Dlq {
        #[command(subcommand)]
        command: crate::ops::DlqCommand,
        #[command(flatten)]
        target: crate::ops::Target,
    },
    /// Load generator against a network (throughput, latency, lost/duplicated counters).
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Write a ready local network: CA, node certificates, configs, network.json.
    Init {
        dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        nodes: usize,
    },
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTSTELLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("poststelle: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo => {
            init_tracing("error");
            let ok = runtime()?.block_on(crate::demo::run())?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Xml { command } => Ok(crate::xmlsec::tool::run(command)),
        Command::Network {
            command: NetworkCommand::Init { dir, nodes },
        } => {
            let net = crate::network::init(&dir, nodes, false)?;
            for n in &net.nodes {
                println!(
                    "node {}: api {}  admin {}  config {}",
                    n.name,
                    n.api,
                    n.admin,
                    n.config.display()
                );
            }
            println!("wrote {}", dir.join("network.json").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => {
            match Config::load(&file).and_then(|c| match crate::xmlsec::seal::NodeKeys::load(&c) {
                Ok(_) => Ok(c),
                Err(errs) => Err(crate::config::ConfigErrors(errs)),
            }) {
                Ok(c) => {
                    println!(
                        "{}: ok (node {}, {} authorities, {} clients, {} partners)",
                        file.display(),
                        c.node_name,
                        c.authorities.len(),
                        c.clients.len(),
                        c.partners.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errs) => {
                    for e in &errs.0 {
                        eprintln!("{e}");
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Serve { config } => {
            init_tracing("info");
            crate::failpoints::setup();
            let path = match config {
                Some(p) => p,
                None => default_config()?,
            };
            let config = Config::load(&path).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?;
            runtime()?.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            files,
            xbeteiligung,
            catalogs,
            json,
        } => validate(&files, xbeteiligung, catalogs, json),
        Command::Send { files, node, token, ca } => runtime()?.block_on(send(files, node, token, ca)),
        Command::Messages { command, target } => runtime()?.block_on(crate::ops::messages(target, command)),
        Command::Dlq { command, target } => runtime()?.block_on(crate::ops::dlq(target, command)),
        Command::Bench(args) => {
            init_tracing("error");
            runtime()?.block_on(crate::bench::run(args))
        }
    }
}

/// The embedded single-node defaults: written once to ./poststelle-data, then reused.
fn default_config() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from("poststelle-data");
    let path = dir.join("a").join("poststelle.toml");
    if !path.is_file() {
        crate::network::init(&dir, 1, true)?;
        eprintln!("poststelle: wrote a local single-node setup to {}", dir.display());
    }
    Ok(path)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let node = crate::node::start(config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    node.stop().await;
    Ok(())
}

fn validate(
    files: &[PathBuf],
    xbeteiligung: Option<PathBuf>,
    catalogs: Vec<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let schemas = tempfile::tempdir()?;
    let root = crate::embedded::write_schemas(schemas.path())?;
    let mut registry = adapters::Registry::new();
    registry.register(Arc::new(adapters::xumzug(&root)))?;
    if let Some(dir) = xbeteiligung {
        registry.register(Arc::new(adapters::xbeteiligung_1_2(&dir, catalogs)))?;
    }
    for a in registry.adapters() {
        if let Err(e) = crate::xml::validate::compile_on_this_thread(a.schema()) {
            eprintln!("poststelle: adapter {}: {e}", a.name());
            return Ok(ExitCode::from(2));
        }
    }
    let limits = crate::xml::prescan::Limits::default();
    let mut all_valid = true;
    for file in files {
        let result = validate_one(&registry, &limits, file);
        let name = file.display().to_string();
        match result {
            Ok(t) => {
                if json {
                    println!("{}", serde_json::json!({"file": name, "valid": true, "type": t}));
                } else {
                    println!("{name}: valid ({t})");
                }
            }
            Err(p) => {
                all_valid = false;
                if json {
                    println!("{}", serde_json::json!({"file": name, "valid": false, "problem": p}));
                } else if p.errors.is_empty() {
                    println!("{name}: {}: {}", p.code, p.detail);
                } else {
                    for e in &p.errors {
                        println!(
                            "{name}:{}:{}: {}: {}",
                            e.line.unwrap_or(0),
                            e.column.unwrap_or(0),
                            p.code,
                            e.message
                        );
                    }
                }
            }
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn validate_one(
    registry: &adapters::Registry,
    limits: &crate::xml::prescan::Limits,
    file: &Path,
) -> Result<String, crate::problem::Problem> {
    use crate::problem::{Code, Problem};
    let bytes = std::fs::read(file).map_err(|e| Problem::new(Code::NotFound, format!("cannot read: {e}")))?;
    let scan = crate::xml::prescan::prescan(&bytes, limits)?;
    let (adapter, t) = registry
        .identify(&scan.root)
        .ok_or_else(|| Problem::new(Code::UnknownMessageType, format!("no adapter handles {}", scan.root)))?;
    crate::xml::validate::validate_on_this_thread(adapter.schema(), &bytes).map_err(|f| f.into_problem())?;
    let h = adapter
        .extract_header(&bytes)
        .map_err(|e| Problem::new(Code::HeaderInvalid, e.to_string()))?;
    adapter
        .check_header(&t, &h)
        .map_err(|e| Problem::new(Code::HeaderInvalid, e.to_string()))?;
    Ok(t.to_string())
}

async fn send(files: Vec<PathBuf>, node: String, token: String, ca: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let http = match ca {
        Some(ca) => crate::tls::trusting(&ca)?,
        None => reqwest::Client::builder().use_native_tls(),
    }
    .build()?;
    let mut failed = 0;
    for f in &files {
        let body = std::fs::read(f)?;
        let r = http
            .post(format!("{}/v1/messages", node.trim_end_matches('/')))
            .bearer_auth(&token)
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if status.is_success() {
            println!(
                "{}: {} ({})",
                f.display(),
                v["id"].as_str().unwrap_or("?"),
                v["status"].as_str().unwrap_or("?")
            );
        } else {
            failed += 1;
            println!(
                "{}: {} {}",
                f.display(),
                v["code"].as_str().unwrap_or("error"),
                v["detail"].as_str().unwrap_or("")
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
