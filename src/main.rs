//! The c2cd command line: parse, load config, start logging, call the library.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use c2cd::config::{self, Config, Source};
use c2cd::core::md5_hex;
use c2cd::store::{self, calls, partners};

/// EX_USAGE: the config or the command line is wrong.
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(name = "c2cd", version, about = "Click-to-call gateway daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Config file [default: /etc/c2cd/c2cd.toml, else the embedded demo default]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on IP:PORT instead of the config's server.listen (repeatable).
        #[arg(long, value_name = "IP:PORT")]
        listen: Vec<std::net::SocketAddr>,
    },
    /// Validate a config file: exit 0, or print FILE:LINE: key: problem and exit 64.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show the calls in the database.
    Calls {
        #[command(subcommand)]
        command: CallsCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show the partners in the database.
    Partners {
        #[command(subcommand)]
        command: PartnersCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the XIP Auth a vendor must send: MD5(secret + partner + requestor + fulfillment).
    Sign {
        #[arg(long)]
        secret: String,
        #[arg(long)]
        partner: String,
        #[arg(long)]
        requestor: String,
        #[arg(long)]
        fulfillment: String,
    },
}

/// Which database the read-only commands open.
#[derive(clap::Args)]
struct DbArgs {
    /// Config file naming the database [default: as for serve]
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Database file, instead of the one the config names.
    #[arg(long, global = true)]
    database: Option<PathBuf>,
}

impl DbArgs {
    fn path(self) -> Result<PathBuf, ExitCode> {
        match self.database {
            Some(d) => Ok(d),
            None => config::load(self.config.as_deref())
                .map(|c| c.database.path)
                .map_err(usage),
        }
    }
}

#[derive(Subcommand)]
enum CallsCommand {
    /// The newest calls, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        partner: Option<String>,
        #[arg(long)]
        state: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One call with everything recorded about it, as JSON.
    Show { id: String },
}

#[derive(Subcommand)]
enum PartnersCommand {
    /// Every partner the database knows, enabled or not.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen } => {
            let mut cfg = match config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage(e),
            };
            if !listen.is_empty() {
                cfg.server.listen = listen;
            }
            c2cd::logging::init(&cfg.log);
            announce(&cfg);
            let r = serve(cfg);
            c2cd::logging::flush();
            result(r)
        }
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Calls { command, db } => match db.path() {
            Ok(path) => result(calls_cmd(&path, command)),
            Err(code) => code,
        },
        Command::Partners {
            command: PartnersCommand::List { json },
            db,
        } => match db.path() {
            Ok(path) => result(partners_cmd(&path, json)),
            Err(code) => code,
        },
        Command::Sign {
            secret,
            partner,
            requestor,
            fulfillment,
        } => {
            println!(
                "{}",
                md5_hex(&[&secret, &partner, &requestor, &fulfillment])
            );
            ExitCode::SUCCESS
        }
    }
}

fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EX_USAGE)
}

fn result(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("c2cd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The first log line: which config runs, and how to use another.
fn announce(cfg: &Config) {
    let v = env!("CARGO_PKG_VERSION");
    let listen: Vec<String> = cfg.server.listen.iter().map(|a| a.to_string()).collect();
    match &cfg.source {
        Source::Embedded => log::warn!(
            "c2cd {v}: running on the embedded demo default (simulator provider, demo partner 102821, database {}, {}, loopback only); for a real install write {} or pass --config FILE",
            cfg.database.path.display(),
            listen.join(", "),
            config::DEFAULT_PATH
        ),
        Source::File(p) => log::info!("c2cd {v}: config {}", p.display()),
    }
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("c2cd-worker")
        .build()
        .context("while starting the async runtime")?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for addr in &cfg.server.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("while binding {addr}"))?;
            listeners.push(l);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut signals =
            c2cd::signal::Signals::new().context("while installing signal handlers")?;
        tokio::spawn(async move {
            loop {
                let s = signals.next().await;
                if tx.send(s).await.is_err() {
                    break;
                }
            }
        });
        c2cd::daemon::run(cfg, listeners, rx).await
    })
}

fn check_config(path: Option<&Path>) -> ExitCode {
    let (text, source) = match config::read(path) {
        Ok(found) => found,
        Err(e) => return usage(e),
    };
    match config::parse_all(&text, source) {
        Ok(c) => {
            println!(
                "{}: ok ({} partners, {} providers)",
                c.source,
                c.partners.len(),
                c.providers.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            ExitCode::from(EX_USAGE)
        }
    }
}

fn calls_cmd(db: &Path, cmd: CallsCommand) -> anyhow::Result<()> {
    let conn =
        store::open_readonly(db).with_context(|| format!("while opening {}", db.display()))?;
    match cmd {
        CallsCommand::List {
            limit,
            partner,
            state,
            json,
        } => {
            let rows = calls::list(&conn, limit, partner.as_deref(), state.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:<36}  {:<24}  {:<5}  {:<10}  {:<16}  {:<16}  {:<11}  HTTP",
                "ID", "CREATED (UTC)", "DIAL", "PARTNER", "A", "B", "STATE"
            );
            for r in rows {
                println!(
                    "{:<36}  {:<24}  {:<5}  {:<10}  {:<16}  {:<16}  {:<11}  {}",
                    r.id,
                    r.created_at,
                    r.dialect,
                    r.partner_id.unwrap_or_default(),
                    r.a_number.unwrap_or_default(),
                    r.b_number.unwrap_or_default(),
                    r.state,
                    r.result_status.map(|s| s.to_string()).unwrap_or_default()
                );
            }
            Ok(())
        }
        CallsCommand::Show { id } => match calls::get(&conn, &id)? {
            Some(v) => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            None => anyhow::bail!("no call {id} in {}", db.display()),
        },
    }
}

fn partners_cmd(db: &Path, json: bool) -> anyhow::Result<()> {
    let conn =
        store::open_readonly(db).with_context(|| format!("while opening {}", db.display()))?;
    let rows = partners::list(&conn)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16}  {:<30}  {:<12}  {:<12}  {:<8}  CALLS",
        "ID", "NAME", "DIALECTS", "PROVIDER", "ENABLED"
    );
    for p in rows {
        println!(
            "{:<16}  {:<30}  {:<12}  {:<12}  {:<8}  {}",
            p.id, p.name, p.dialects, p.provider, p.enabled, p.calls
        );
    }
    Ok(())
}
