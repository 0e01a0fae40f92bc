//! The command line (`poststelle …`): parses arguments, sets up tracing, runs, maps to exit codes.
//! `anyhow` stops here; everything below returns typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

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
        /// This process's own admin address instead of `[listen] admin` (several processes of
        /// a node on one machine: one each, so that Prometheus scrapes every process).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Check a config file and print every problem at once.
    CheckConfig { file: PathBuf },
    /// Validate messages offline: `file: valid (type)` or `file:LINE:COL: reason` per error.
    /// Exit 0: all valid; 1: some invalid; 2: usage or setup error.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Adapter directories (each with an adapter.toml) to load besides the built-in demo standard.
        #[arg(long = "adapters")]
        adapters: Vec<PathBuf>,
        /// The folder that `{xoev}/` in manifests stands for (the official schemas).
        #[arg(long)]
        xoev_root: Option<PathBuf>,
        /// Machine-readable output, one JSON object per file.
        #[arg(long)]
        json: bool,
    },
    /// Adapter developers: scaffold an adapter, or run its conformance checks.
    Adapter {
        #[command(subcommand)]
        command: AdapterCommand,
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
    /// Operators: the node at a glance (counts, partners, next certificate expiry). Exit 1 when
    /// there are dead letters or a certificate expires within 30 days.
    Status {
        #[command(flatten)]
        target: crate::ops::Target,
    },
    /// Tokens for clients and admins: `token new` prints a fresh one and the `token_sha256`
    /// that goes into the config.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Operators: queues per direction, partner and state, with depth and the oldest's age.
    Queues {
        #[command(flatten)]
        target: crate::ops::Target,
    },
    /// Operators: the node re-reads its configuration file and puts it in force without a
    /// restart (as `kill -HUP` does); a configuration with problems is refused whole, every
    /// problem printed (exit 1), and the one loaded before stays in force.
    Reload {
        #[command(flatten)]
        target: crate::ops::Target,
    },
    /// Operators: configured certificates and days to expiry.
    Certs {
        #[command(flatten)]
        target: crate::ops::Target,
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
    /// The audit log: `audit verify FILE` or `audit verify --config FILE` recomputes its hash
    /// chain (exit 0 intact, 1 broken, 2 unreadable).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Load generator against a network (throughput, latency, lost/duplicated counters).
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify a node's audit log; names the first edited or deleted entry. Either a log file
    /// (`<data_dir>/audit.log`), or `--config` for the node's log wherever it lives (its data
    /// folder, or its PostgreSQL store).
    Verify {
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        file: Option<PathBuf>,
        /// The node's configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AdapterCommand {
    /// Write a new adapter directory with a commented manifest and fixture folders.
    New {
        name: String,
        /// Where to create it (default: the current folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Conformance checks: schemas compile offline, valid fixtures validate with every header
    /// field, invalid fixtures fail with the error their sidecar names, transforms round-trip.
    /// Exit 0: all pass; 1: a check failed; 2: an adapter does not load.
    Check {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The folder that `{xoev}/` in manifests stands for (the official schemas).
        #[arg(long)]
        xoev_root: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a fresh random token (48 hex digits) and its SHA-256, one per line as
    /// `token = "…"` and `token_sha256 = "…"`: the hash goes into the config, the token to
    /// whoever calls.
    New,
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Write a ready local network: CA, node certificates, configs, network.json.
    Init {
        dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// A RabbitMQ broker (amqp://…): every client gets an intake and an inbox queue.
        #[arg(long)]
        amqp: Option<String>,
        /// Listener ports from this one on (3 per node: api, transport, admin), each checked
        /// free; without it they are picked at random outside the kernel's ephemeral range.
        #[arg(long)]
        base_port: Option<u16>,
        /// A PostgreSQL database (postgres://…) for every node's store, one schema per node
        /// (`poststelle_<node>`); without it each node keeps SQLite in its data folder.
        #[arg(long)]
        store_url: Option<String>,
        /// The keys of the development PKI: RSA-3072 (RSA-PSS, RSA-OAEP) or EC P-256 (ECDSA,
        /// ECDH-ES).
        #[arg(long, value_enum, default_value_t = crate::pki::KeyType::Rsa)]
        key_type: crate::pki::KeyType,
        /// Every client gets a drop folder, `<node>/drop` (`out/`, `sent/`, `rejected/`, `in/`,
        /// `status/`), which takes its deliveries.
        #[arg(long)]
        file_drop: bool,
    },
}

/// `check-config` on a PostgreSQL store: connects and reports the schema's version.
fn check_store(config: &Config) -> anyhow::Result<ExitCode> {
    let Some(settings) = crate::node::pg_settings(config)? else {
        println!("store: SQLite in {}", config.data_dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    let url = crate::store::pg::redact(&settings.url);
    match runtime()?.block_on(crate::store::pg::schema_version(&settings)) {
        Ok(v) => {
            let known = crate::store::pg::SCHEMA_VERSION;
            let state = match v {
                0 => "not created yet (the node creates it at start)".to_owned(),
                v if v > known => format!("version {v}, newer than this binary's {known}: it will not start"),
                v if v < known => format!("version {v}; the node migrates it to {known} at start"),
                v => format!("version {v}, current"),
            };
            println!("store: PostgreSQL {url}, schema {}: {state}", settings.schema);
            Ok(if v > known {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => {
            eprintln!("store: {e}");
            Ok(ExitCode::from(1))
        }
    }
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
            command:
                NetworkCommand::Init {
                    dir,
                    nodes,
                    amqp,
                    base_port,
                    store_url,
                    key_type,
                    file_drop,
                },
        } => {
            let ports = base_port.map_or(crate::network::Ports::Free, crate::network::Ports::From);
            let net = crate::network::init_with(
                &dir,
                nodes,
                ports,
                amqp.as_deref(),
                store_url.as_deref(),
                key_type,
                file_drop,
            )?;
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
            match Config::load(&file).and_then(|c| match crate::certs::NodeKeys::load(&c) {
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
                    check_store(&c)
                }
                Err(errs) => {
                    for e in &errs.0 {
                        eprintln!("{e}");
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Serve { config, admin } => {
            init_tracing("info");
            crate::failpoints::setup();
            let path = match config {
                Some(p) => p,
                None => default_config()?,
            };
            let mut config = Config::load(&path).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?;
            if let Some(admin) = admin {
                config.admin_addr = admin;
            }
            runtime()?.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            files,
            adapters,
            xoev_root,
            json,
        } => validate(&files, &adapters, xoev_root, json),
        Command::Adapter {
            command: AdapterCommand::New { name, dir },
        } => {
            let dir = crate::adapter_tools::scaffold(&dir, &name)?;
            println!("wrote {}", dir.join(adapters::manifest::FILE).display());
            println!(
                "next: put the schemas into {}/schema, fixtures into fixtures/valid and fixtures/invalid,",
                dir.display()
            );
            println!(
                "      edit the manifest, then run: poststelle adapter check {}",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Adapter {
            command: AdapterCommand::Check { dirs, xoev_root },
        } => adapter_check(&dirs, xoev_root),
        Command::Send { files, node, token, ca } => runtime()?.block_on(send(files, node, token, ca)),
        Command::Status { target } => runtime()?.block_on(crate::ops::status(target)),
        Command::Token {
            command: TokenCommand::New,
        } => {
            let (token, hash) = crate::access::new_token()?;
            println!("token = \"{token}\"\ntoken_sha256 = \"{hash}\"");
            Ok(ExitCode::SUCCESS)
        }
        Command::Queues { target } => runtime()?.block_on(crate::ops::queues(target)),
        Command::Reload { target } => runtime()?.block_on(crate::ops::reload(target)),
        Command::Certs { target } => runtime()?.block_on(crate::ops::certs(target)),
        Command::Messages { command, target } => runtime()?.block_on(crate::ops::messages(target, command)),
        Command::Dlq { command, target } => runtime()?.block_on(crate::ops::dlq(target, command)),
        Command::Audit {
            command: AuditCommand::Verify { file, config },
        } => audit_verify(file, config),
        Command::Bench(args) => {
            init_tracing("error");
            runtime()?.block_on(crate::bench::run(args))
        }
    }
}

/// `audit verify`: a log file, or the log of the node that `config` describes.
fn audit_verify(file: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (name, result) = match (file, config) {
        (Some(file), _) => (file.display().to_string(), crate::audit::verify(&file)),
        (None, Some(config)) => {
            let c = Config::load(&config)?;
            match crate::node::pg_settings(&c)? {
                None => {
                    let file = c.data_dir.join("audit.log");
                    (file.display().to_string(), crate::audit::verify(&file))
                }
                Some(settings) => {
                    let name = format!(
                        "{} (schema {})",
                        crate::store::pg::redact(&settings.url),
                        settings.schema
                    );
                    let result = runtime()?.block_on(async {
                        // Verify only what is there: a missing or other schema version is
                        // named, never created or migrated by a check.
                        let version = crate::store::pg::schema_version(&settings).await?;
                        if version != crate::store::pg::SCHEMA_VERSION {
                            return Err(crate::store::StoreError::Failed(format!(
                                "schema {} is at version {version}, this binary reads version {}",
                                settings.schema,
                                crate::store::pg::SCHEMA_VERSION
                            )));
                        }
                        let store = crate::store::pg::PgStore::open(&settings).await?;
                        Ok::<_, crate::store::StoreError>(crate::audit::verify_store(&store).await)
                    });
                    match result {
                        Ok(r) => (name, r),
                        Err(e) => {
                            eprintln!("{name}: cannot open the store: {e}");
                            return Ok(ExitCode::from(2));
                        }
                    }
                }
            }
        }
        (None, None) => anyhow::bail!("name a log file or --config"),
    };
    match result {
        Ok(v) => {
            let by: Vec<String> = v.by_process.iter().map(|(p, n)| format!("{p} {n}")).collect();
            match by.is_empty() {
                true => println!("{name}: intact, {} entries", v.entries),
                false => println!("{name}: intact, {} entries; by process: {}", v.entries, by.join(", ")),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("{name}:{}: broken: {}", b.line, b.reason);
            Ok(ExitCode::from(1))
        }
    }
}

/// The embedded single-node defaults: written once to ./poststelle-data, then reused.
fn default_config() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from("poststelle-data");
    let path = dir.join("a").join("poststelle.toml");
    if !path.is_file() {
        crate::network::init(&dir, 1, crate::network::Ports::Fixed)?;
        eprintln!("poststelle: wrote a local single-node setup to {}", dir.display());
    }
    Ok(path)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let node = crate::node::start(config).await?;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    // SIGHUP reloads the configuration; a refused one is logged with every problem.
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                let _ = crate::reload::reload(&node.ctx, "SIGHUP").await;
            }
        }
    }
    tracing::info!("shutting down");
    node.stop().await;
    Ok(())
}

type Loaded = Result<(adapters::Registry, Vec<adapters::Manifest>), Vec<String>>;

/// The built-in adapters plus `dirs`, loaded offline; the temporary folder holds the embedded
/// schemas and must live as long as the registry is used.
fn offline_registry(
    dirs: &[PathBuf],
    xoev_root: Option<PathBuf>,
    with_fixtures: bool,
) -> anyhow::Result<(tempfile::TempDir, Loaded)> {
    let scratch = tempfile::tempdir()?;
    let root = crate::embedded::write_schemas(&scratch.path().join("schemas"))?;
    let builtin = crate::embedded::write_builtin_adapters(&scratch.path().join("adapters"))?;
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
        .collect();
    let roots = adapters::Roots {
        xoev: xoev_root.map(|r| std::path::absolute(&r).unwrap_or(r)),
        schemas: Some(root),
    };
    let loaded = crate::adapter_tools::load_registry(&builtin, &dirs, &roots, with_fixtures);
    Ok((scratch, loaded))
}

fn validate(files: &[PathBuf], dirs: &[PathBuf], xoev_root: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let (_scratch, loaded) = offline_registry(dirs, xoev_root, false)?;
    let registry = match loaded {
        Ok((registry, _)) => registry,
        Err(problems) => {
            for p in problems {
                eprintln!("poststelle: {p}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let mut all_valid = true;
    let mut unreadable = false;
    for file in files {
        let name = file.display().to_string();
        let result = std::fs::read(file)
            .map_err(|e| {
                unreadable = true;
                crate::problem::Problem::new(crate::problem::Code::NotFound, format!("cannot read: {e}"))
            })
            .and_then(|bytes| crate::adapter_tools::check_document(&registry, &bytes, false));
        match result {
            Ok(a) => {
                let t = a.message_type.to_string();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"file": name, "valid": true, "type": t, "warning": a.warning})
                    );
                } else {
                    println!("{name}: valid ({t})");
                    if let Some(w) = a.warning {
                        println!("{name}: warning: {w}");
                    }
                }
            }
            Err(p) => {
                all_valid = false;
                if json {
                    println!("{}", serde_json::json!({"file": name, "valid": false, "problem": p}));
                } else {
                    for line in crate::adapter_tools::problem_lines(&name, &p) {
                        println!("{line}");
                    }
                }
            }
        }
    }
    Ok(if unreadable {
        ExitCode::from(2)
    } else if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn adapter_check(dirs: &[PathBuf], xoev_root: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (_scratch, loaded) = offline_registry(dirs, xoev_root, true)?;
    let (registry, manifests) = match loaded {
        Ok(l) => l,
        Err(problems) => {
            for p in problems {
                println!("FAIL {p}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let mut failures = 0;
    for m in &manifests {
        let report = crate::adapter_tools::check_adapter(m, &registry);
        for line in &report.lines {
            println!("{line}");
        }
        failures += report.failures;
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
