//! The c2cd command line: parse, load config, start logging, call the library.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use c2cd::config::{self, Config, Source};
use c2cd::core::call::Side;
use c2cd::core::md5_hex;
use c2cd::store::blocklist::{self, Sides};
use c2cd::store::{self, calls, partners};

// mimalloc in every build: musl's allocator serialises threads, glibc's costs
// more CPU under load (Cargo.toml).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// EX_USAGE: the config or the command line is wrong.
const EX_USAGE: u8 = 64;

/// `c2cd block check`: a number checked is blocked.
const EX_BLOCKED: u8 = 3;

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
        /// Config file [default: /etc/c2cd/c2cd.toml, else the embedded demo default]
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
    /// Show and change the Cloud9 subscribers' balances c2cd holds
    /// ([cloud9] balance_holder = "c2cd"); every change is a ledger row.
    Balance {
        #[command(subcommand)]
        command: BalanceCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show the Cloud9 authorisation requests and their decisions, newest first.
    Cloud9 {
        #[command(subcommand)]
        command: Cloud9Command,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show the RoundTrip sales data submissions, newest first.
    Sales {
        #[command(subcommand)]
        command: SalesCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The blocklist (do-not-call list): numbers, prefixes and wildcards c2cd
    /// refuses to call, on side A, side B or both; national lists imported whole.
    Block {
        #[command(subcommand)]
        command: BlockCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Ask the running daemon how its providers are: available, breaker, calls
    /// in flight, failures, last error (through /v1/providers and [admin] token).
    Providers {
        /// Config file [default: /etc/c2cd/c2cd.toml, else the embedded demo default]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The daemon's address, when not the config's first server.listen.
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the callback outbox, or send a callback again.
    Callbacks {
        #[command(subcommand)]
        command: CallbacksCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write a consistent copy of the database, safely while c2cd runs.
    Backup {
        /// The copy to write.
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        file: Option<PathBuf>,
        /// Write c2cd-YYYYMMDDTHHMMSSZ.db into DIR instead, keeping the newest --keep.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// With --dir: how many copies to keep.
        #[arg(long, default_value_t = 7, requires = "dir", value_parser = clap::value_parser!(u32).range(1..=1000))]
        keep: u32,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write the calls with their RoundTrip sales data, as CSV and XML, for
    /// media agencies. Without a window: every whole day (in [roundtrip]
    /// export_timezone) not exported yet, up to yesterday, each recorded so it
    /// is never written twice (what c2cd-export.timer runs nightly).
    Export {
        /// Config file [default: /etc/c2cd/c2cd.toml, else the embedded demo default]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this window instead (RFC 3339 with its offset, or a date in the
        /// export time zone); it is not recorded.
        #[arg(long, requires = "until")]
        since: Option<String>,
        #[arg(long, requires = "since")]
        until: Option<String>,
        /// Write into DIR instead of [roundtrip] export_dir.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print a man page: c2cd.8 or c2cd.toml.5.
    #[command(hide = true)]
    Man { page: String },
    /// Print the XIP Auth a vendor must send: MD5(secret + partner + requestor + fulfillment).
    Sign {
        /// The partner's shared secret.
        #[arg(long)]
        secret: String,
        /// The PartnerID.
        #[arg(long)]
        partner: String,
        /// The Requestor number, E.164 digits without +.
        #[arg(long)]
        requestor: String,
        /// The Fulfillment number, E.164 digits without +.
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
        /// A number (E.164, +16045551234) on either side or on any leg.
        #[arg(long)]
        number: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One call with everything recorded about it, as JSON.
    Show { id: String },
}

#[derive(Subcommand)]
enum CallbacksCommand {
    /// The newest callbacks, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this call's.
        #[arg(long)]
        call: Option<String>,
        /// pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One callback with its body and every attempt, as JSON.
    Show { id: i64 },
    /// Queue one callback to be sent again now (the running daemon sends it).
    Replay { id: i64 },
}

#[derive(Subcommand)]
enum BalanceCommand {
    /// A subscriber's balance and latest ledger rows, or every balance.
    Show {
        /// +447700900123; none: every balance.
        msisdn: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Add AMOUNT (like 5.00) to a subscriber's balance.
    Credit {
        msisdn: String,
        amount: String,
        /// Why, for the ledger.
        #[arg(long, default_value = "credit")]
        reason: String,
    },
    /// Take AMOUNT from a subscriber's balance (never below zero).
    Debit {
        msisdn: String,
        amount: String,
        #[arg(long, default_value = "debit")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum Cloud9Command {
    /// The newest requests, with what decided each.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One subscriber's, +447700900123.
        #[arg(long)]
        msisdn: Option<String>,
        /// JSON instead of a table (with the variables and the reply).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SalesCommand {
    /// The newest submissions, answered or refused.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One call's sales data and its history.
        #[arg(long)]
        call: Option<String>,
        #[arg(long)]
        partner: Option<String>,
        /// JSON instead of a table (with the submissions as posted).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BlockCommand {
    /// Block a number, prefix or pattern (source "cli"). Adding one again
    /// replaces its side, reason and expiry; its hits are kept.
    Add {
        /// +E.164 (+12015550123), a prefix ending with * (+1900*), ? for any
        /// one digit (+1900555????), or a local extension's digits (2001).
        /// Spaces, dashes, dots and parentheses are dropped.
        pattern: String,
        /// The side it blocks: a (called first), b (connected once A
        /// answers), or both.
        #[arg(long, default_value = "both", value_parser = sides_arg)]
        side: Sides,
        /// Why: shown with every call it refuses.
        #[arg(long)]
        reason: Option<String>,
        /// When it stops blocking: RFC 3339 with its offset
        /// (2027-01-01T00:00:00Z) or a duration from now (90m, 12h, 30d, 2w)
        /// [default: never]
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// Unblock a pattern, as listed: from every source, or from --source only.
    Remove {
        /// The pattern as list shows it (separators are dropped, as for add).
        pattern: String,
        /// Only this source's entry: cli, or an imported list's name.
        #[arg(long)]
        source: Option<String>,
    },
    /// The entries by pattern, with their hits, last hit and expiry, and the
    /// imported lists.
    List {
        /// Only this source's entries: cli, or an imported list's name.
        #[arg(long)]
        source: Option<String>,
        /// At most this many entries; how many more there are is said.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Say which entry blocks each NUMBER, if any (hits are not counted).
    /// Exit status: 0 when none is blocked, 3 when one is.
    Check {
        /// +E.164 (+12015550123) or a local extension's digits.
        #[arg(required_unless_present = "stdin")]
        numbers: Vec<String>,
        /// Only on this side: a or b [default: either]
        #[arg(long, value_parser = side_arg)]
        side: Option<Side>,
        /// Read the numbers from standard input, one a line: print the blocked
        /// ones, and on standard error how many were checked and how fast.
        #[arg(long, conflicts_with = "numbers")]
        stdin: bool,
    },
    /// Import a do-not-call list in one pass, in batches beside the running
    /// daemon. Re-importing a --source replaces its previous list.
    Import {
        /// One number a line, or the FTC's areacode,number (201,2345678); in
        /// other CSV the first column. An optional header line, blank lines
        /// and CRLF are fine; bad lines are counted and skipped.
        file: PathBuf,
        /// The list's name (not "cli").
        #[arg(long, default_value = "dnc")]
        source: String,
        /// Given to 10-digit national numbers; numbers with + are taken as
        /// they are.
        #[arg(long, default_value = "1")]
        country_code: String,
        /// The side its numbers are blocked on: a, b or both.
        #[arg(long, default_value = "both", value_parser = sides_arg)]
        side: Sides,
        /// Why: shown with every call it refuses.
        #[arg(long)]
        reason: Option<String>,
        /// When its entries stop blocking, as for add [default: never]
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
}

fn sides_arg(s: &str) -> Result<Sides, String> {
    Sides::parse(s).ok_or_else(|| format!("{s:?} is not a side: a, b or both"))
}

fn side_arg(s: &str) -> Result<Side, String> {
    match s {
        "a" | "A" => Ok(Side::A),
        "b" | "B" => Ok(Side::B),
        _ => Err(format!("{s:?} is not a side: a or b")),
    }
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
            let listeners = match bind_and_drop(&cfg) {
                Ok(l) => l,
                Err(e) => return result(Err(e)),
            };
            c2cd::logging::init(&cfg.log);
            announce(&cfg);
            let r = serve(cfg, listeners);
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
        Command::Balance { command, db } => match db.path() {
            Ok(path) => result(balance_cmd(&path, command)),
            Err(code) => code,
        },
        Command::Cloud9 {
            command:
                Cloud9Command::List {
                    limit,
                    msisdn,
                    json,
                },
            db,
        } => match db.path() {
            Ok(path) => result(cloud9_cmd(&path, limit, msisdn, json)),
            Err(code) => code,
        },
        Command::Sales {
            command:
                SalesCommand::List {
                    limit,
                    call,
                    partner,
                    json,
                },
            db,
        } => match db.path() {
            Ok(path) => result(sales_cmd(&path, limit, call, partner, json)),
            Err(code) => code,
        },
        Command::Block { command, db } => match db.path() {
            Ok(path) => block_cmd(&path, command),
            Err(code) => code,
        },
        Command::Providers {
            config,
            listen,
            json,
        } => {
            let mut cfg = match config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage(e),
            };
            if let Some(l) = listen {
                cfg.server.listen = vec![l];
            }
            result(providers_cmd(&cfg, json))
        }
        Command::Callbacks { command, db } => match db.path() {
            Ok(path) => result(callbacks_cmd(&path, command)),
            Err(code) => code,
        },
        Command::Backup {
            file,
            dir,
            keep,
            db,
        } => match db.path() {
            Ok(path) => result(backup_cmd(&path, file, dir, keep as usize)),
            Err(code) => code,
        },
        Command::Export {
            config,
            since,
            until,
            dir,
        } => match config::load(config.as_deref()) {
            Ok(cfg) => result(export_cmd(&cfg, since.zip(until), dir)),
            Err(e) => usage(e),
        },
        Command::Man { page } => match page.as_str() {
            "c2cd.8" => {
                print!("{}", man_page());
                ExitCode::SUCCESS
            }
            "c2cd.toml.5" => {
                print!("{}", config::reference::man_page(env!("CARGO_PKG_VERSION")));
                ExitCode::SUCCESS
            }
            other => usage(format!("no man page {other:?}: c2cd.8 or c2cd.toml.5")),
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
            "c2cd {v}: running on the embedded demo default (simulator provider, demo partners 102821 (xip), crm (native), acme (spokn) and airtel (airtel), database {}, {}, loopback only); for a real install write {} or pass --config FILE",
            cfg.database.path.display(),
            listen.join(", "),
            config::DEFAULT_PATH
        ),
        Source::File(p) => log::info!("c2cd {v}: config {}", p.display()),
    }
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
}

/// Binds the listeners and drops every capability, on the main thread before any
/// other thread exists (see `c2cd::privileges`). Without a port below 1024 the
/// capabilities go before binding: they are used only when the config asks.
fn bind_and_drop(cfg: &Config) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let privileged = cfg
        .server
        .listen
        .iter()
        .any(|a| a.port() != 0 && a.port() < 1024);
    if !privileged {
        c2cd::privileges::drop_all().context("while dropping capabilities")?;
    }
    let listeners = cfg
        .server
        .listen
        .iter()
        .map(|addr| c2cd::privileges::bind(*addr).with_context(|| format!("while binding {addr}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    c2cd::privileges::drop_all().context("while dropping capabilities")?;
    Ok(listeners)
}

fn serve(cfg: Config, listeners: Vec<std::net::TcpListener>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("c2cd-worker")
        .build()
        .context("while starting the async runtime")?;
    rt.block_on(async move {
        let listeners = listeners
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<std::io::Result<Vec<_>>>()
            .context("while registering the listeners")?;
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
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
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
    let conn = open_db(db)?;
    match cmd {
        CallsCommand::List {
            limit,
            partner,
            state,
            number,
            json,
        } => {
            let filter = calls::Filter {
                partner,
                state,
                number,
                ..Default::default()
            };
            let rows = calls::list(&conn, limit, &filter)?;
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

/// The database, read-only, beside the running daemon.
fn open_db(db: &Path) -> anyhow::Result<rusqlite::Connection> {
    store::open_readonly(db).with_context(|| format!("while opening {}", db.display()))
}

fn partners_cmd(db: &Path, json: bool) -> anyhow::Result<()> {
    let conn = open_db(db)?;
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

fn balance_cmd(db: &Path, command: BalanceCommand) -> anyhow::Result<()> {
    use c2cd::core::money::Money;
    use c2cd::store::cloud9;
    // A Cloud9 subscriber (+447700900123) or a Spokn partner (partner:<id>).
    let msisdn_ok = |m: &str| {
        let msisdn = m
            .strip_prefix('+')
            .is_some_and(|d| (6..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
        let partner = m.strip_prefix("partner:").is_some_and(|id| {
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())
        });
        anyhow::ensure!(
            msisdn || partner,
            "{m:?} is neither an MSISDN (+ and 6 to 15 digits) nor partner:<id>"
        );
        Ok(())
    };
    let change = |msisdn: &str, amount: &str, reason: &str, sign: i64| -> anyhow::Result<()> {
        msisdn_ok(msisdn)?;
        let amount = Money::parse(amount)
            .filter(|m| m.0 > 0)
            .ok_or_else(|| anyhow::anyhow!("{amount:?} is not an amount like 5.00"))?;
        // A write beside the running daemon: SQLite serialises it with the
        // daemon's writer (WAL, busy timeout), in one transaction.
        let mut conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                .with_context(|| format!("while opening {}", db.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let after = cloud9::change(
            &tx,
            msisdn,
            Money(amount.0 * sign),
            reason,
            c2cd::core::now_ms(),
        )?;
        tx.commit()?;
        println!("{msisdn}: {after}");
        Ok(())
    };
    match command {
        BalanceCommand::Credit {
            msisdn,
            amount,
            reason,
        } => change(&msisdn, &amount, &reason, 1),
        BalanceCommand::Debit {
            msisdn,
            amount,
            reason,
        } => change(&msisdn, &amount, &reason, -1),
        BalanceCommand::Show { msisdn, limit } => {
            let conn = open_db(db)?;
            match msisdn {
                None => {
                    for (m, b) in cloud9::balances(&conn)? {
                        println!("{m:<16}  {b:>12}");
                    }
                }
                Some(m) => {
                    msisdn_ok(&m)?;
                    println!("{m}: {}", cloud9::balance(&conn, &m)?);
                    for e in cloud9::ledger(&conn, &m, limit.min(10_000))? {
                        println!(
                            "  {:>6}  {:<24}  {:>10}  {:>12}  {}",
                            e.id, e.at, e.delta, e.balance, e.reason
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

fn block_cmd(db: &Path, command: BlockCommand) -> ExitCode {
    let now = c2cd::core::now_ms();
    let expiry = |s: Option<String>| s.map(|s| blocklist::parse_expiry(&s, now)).transpose();
    let pattern = |s: &str| {
        blocklist::Pattern::parse(s).map_err(|e| format!("{s:?} is not a blocklist pattern: {e}"))
    };
    match command {
        BlockCommand::Add {
            pattern: p,
            side,
            reason,
            expires,
        } => {
            let entry = match (pattern(&p), expiry(expires)) {
                (Ok(pattern), Ok(expires_at)) => blocklist::NewEntry {
                    pattern,
                    sides: side,
                    reason,
                    expires_at,
                },
                (Err(e), _) | (_, Err(e)) => return usage(e),
            };
            result(block_write(db, |c| {
                let new = blocklist::add(c, &entry, now)?;
                let how = if new { "blocked" } else { "updated" };
                println!("{}: {how} on {}", entry.pattern, side_words(entry.sides));
                Ok(())
            }))
        }
        BlockCommand::Remove { pattern: p, source } => {
            let p = match pattern(&p) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            result(block_write(db, |c| {
                let removed = blocklist::remove(c, &p, source.as_deref())?;
                anyhow::ensure!(!removed.is_empty(), "{p} is not in the blocklist");
                println!("{p}: removed from {}", removed.join(", "));
                Ok(())
            }))
        }
        BlockCommand::List {
            source,
            limit,
            json,
        } => result(block_list(db, source.as_deref(), limit, json, now)),
        BlockCommand::Check {
            numbers,
            side,
            stdin,
        } => block_check(db, &numbers, side, stdin, now),
        BlockCommand::Import {
            file,
            source,
            country_code,
            side,
            reason,
            expires,
        } => {
            let expires_at = match expiry(expires) {
                Ok(e) => e,
                Err(e) => return usage(e),
            };
            let o = blocklist::ImportOptions {
                source,
                file: file.display().to_string(),
                country_code,
                sides: side,
                reason,
                expires_at,
                batch: blocklist::IMPORT_BATCH,
            };
            if let Err(e) = o.validate() {
                return usage(e);
            }
            result(block_import(db, &file, &o, now))
        }
    }
}

/// A write beside the running daemon, in one transaction: SQLite serialises
/// it with the daemon's writer (WAL, busy timeout).
fn block_write(
    db: &Path,
    f: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut conn = store::open_beside_daemon(db, std::time::Duration::from_secs(10))
        .with_context(|| format!("while opening {}", db.display()))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    f(&tx)?;
    tx.commit()?;
    Ok(())
}

fn side_words(sides: Sides) -> &'static str {
    match sides {
        Sides::A => "side A",
        Sides::B => "side B",
        Sides::Both => "both sides",
    }
}

fn block_list(
    db: &Path,
    source: Option<&str>,
    limit: usize,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    let conn = open_db(db)?;
    let lists = blocklist::imported_lists(&conn)?;
    let lists: Vec<_> = lists
        .into_iter()
        .filter(|l| source.is_none_or(|s| s == l.source))
        .collect();
    let page = blocklist::list(&conn, source, limit.min(100_000), now)?;
    if json {
        let v = serde_json::json!({
            "entries": page.entries,
            "more": page.more,
            "imported_lists": lists,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for l in &lists {
        let count = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        match &l.finished_at {
            Some(at) => println!(
                "list {}: {} numbers from {}, imported {at} (import {}, {} bad lines)",
                l.source,
                count(l.entries),
                l.file,
                l.generation,
                count(l.bad)
            ),
            None => println!(
                "list {}: import {} of {} started {} and has not finished",
                l.source, l.generation, l.file, l.started_at
            ),
        }
    }
    println!(
        "{:<18}  {:<4}  {:<12}  {:>6}  {:<24}  {:<32}  REASON",
        "PATTERN", "SIDE", "SOURCE", "HITS", "LAST HIT", "EXPIRES"
    );
    for e in page.entries {
        let expires = match (e.expires_at, e.expired) {
            (Some(t), true) => format!("expired {t}"),
            (Some(t), false) => t,
            (None, _) => "never".to_string(),
        };
        println!(
            "{:<18}  {:<4}  {:<12}  {:>6}  {:<24}  {:<32}  {}",
            e.pattern,
            e.side,
            e.source,
            e.hits,
            e.last_hit_at.unwrap_or_else(|| "-".into()),
            expires,
            e.reason.unwrap_or_default()
        );
    }
    if page.more > 0 {
        println!("… and {} more (--limit N, --source NAME)", page.more);
    }
    Ok(())
}

/// What blocks `number` on `side` (either when `None`), in words; `None` when
/// nothing does.
fn blocked(
    conn: &rusqlite::Connection,
    number: &str,
    side: Option<Side>,
    now: i64,
) -> anyhow::Result<Option<String>> {
    let hit = |s| blocklist::check(conn, number, s, now);
    let found = match side {
        Some(s) => hit(s)?.map(|h| format!("on side {} by {h}", s.as_str().to_uppercase())),
        None => match (hit(Side::A)?, hit(Side::B)?) {
            (Some(a), Some(b)) if a == b => Some(format!("on both sides by {a}")),
            (Some(a), Some(b)) => Some(format!("on side A by {a}; on side B by {b}")),
            (Some(a), None) => Some(format!("on side A by {a}")),
            (None, Some(b)) => Some(format!("on side B by {b}")),
            (None, None) => None,
        },
    };
    Ok(found)
}

fn block_check(
    db: &Path,
    numbers: &[String],
    side: Option<Side>,
    stdin: bool,
    now: i64,
) -> ExitCode {
    let numbers = match numbers
        .iter()
        .map(|n| {
            blocklist::normalise_number(n)
                .map_err(|e| format!("{n:?} is not a number to check: it {e}"))
        })
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(n) => n,
        Err(e) => return usage(e),
    };
    let conn = match open_db(db) {
        Ok(c) => c,
        Err(e) => return result(Err(e)),
    };
    let run = || -> anyhow::Result<bool> {
        if !stdin {
            let mut any = false;
            for number in &numbers {
                match blocked(&conn, number.as_str(), side, now)? {
                    Some(why) => {
                        any = true;
                        println!("{number}: blocked {why}");
                    }
                    None => println!("{number}: not blocked"),
                }
            }
            return Ok(any);
        }
        use std::io::{BufRead, Write};
        let started = std::time::Instant::now();
        let (mut checked, mut hits, mut bad) = (0u64, 0u64, 0u64);
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for (i, line) in std::io::stdin().lock().split(b'\n').enumerate() {
            let line = line?;
            let line = String::from_utf8_lossy(&line);
            if line.trim().is_empty() {
                continue;
            }
            let Ok(number) = blocklist::normalise_number(&line) else {
                bad += 1;
                eprintln!("line {}: {:?} is not a number", i + 1, line.trim());
                continue;
            };
            checked += 1;
            if let Some(why) = blocked(&conn, number.as_str(), side, now)? {
                hits += 1;
                writeln!(out, "{number}: blocked {why}")?;
            }
        }
        out.flush()?;
        let took = started.elapsed();
        eprintln!(
            "checked {checked} numbers in {:.3} s ({:.1} µs each): {hits} blocked, {bad} bad lines",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / checked.max(1) as f64
        );
        Ok(hits > 0)
    };
    match run() {
        Ok(true) => ExitCode::from(EX_BLOCKED),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => result(Err(e)),
    }
}

fn block_import(
    db: &Path,
    file: &Path,
    o: &blocklist::ImportOptions,
    now: i64,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let input =
        std::fs::File::open(file).with_context(|| format!("while opening {}", file.display()))?;
    // Each batch waits its turn behind the daemon's commits, which are short.
    let mut conn = store::open_beside_daemon(db, std::time::Duration::from_secs(30))
        .with_context(|| format!("while opening {}", db.display()))?;
    let done = blocklist::import(
        &mut conn,
        std::io::BufReader::with_capacity(1 << 16, input),
        o,
        now,
    )
    .with_context(|| format!("while importing {}", file.display()))?;
    println!(
        "{}: imported as list {} (import {}) in {:.2} s",
        file.display(),
        o.source,
        done.generation,
        started.elapsed().as_secs_f64()
    );
    println!("  lines read:                   {}", done.lines);
    println!(
        "  numbers listed:               {} ({} distinct)",
        done.numbers, done.distinct
    );
    println!("  removed, no longer listed:    {}", done.removed);
    println!("  bad lines skipped:            {}", done.bad);
    for b in &done.first_bad {
        println!("    line {}: {:?}: {}", b.line, b.text, b.why);
    }
    if done.bad > done.first_bad.len() as u64 {
        println!(
            "  … and {} more bad lines",
            done.bad - done.first_bad.len() as u64
        );
    }
    Ok(())
}

fn cloud9_cmd(db: &Path, limit: usize, msisdn: Option<String>, json: bool) -> anyhow::Result<()> {
    let conn = open_db(db)?;
    let rows = c2cd::store::cloud9::requests(&conn, msisdn.as_deref(), limit.min(10_000))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:>6}  {:<24}  {:<16}  {:<16}  {:<8}  {:>5}  WHY",
        "ID", "RECEIVED", "MSISDN", "DESTINATION", "DECISION", "TIMER"
    );
    for r in rows {
        println!(
            "{:>6}  {:<24}  {:<16}  {:<16}  {:<8}  {:>5}  {}",
            r.id,
            r.received_at,
            r.msisdn.unwrap_or_default(),
            r.destination.unwrap_or_default(),
            r.decision,
            r.timer.map(|t| t.to_string()).unwrap_or_default(),
            r.rule
        );
    }
    Ok(())
}

fn sales_cmd(
    db: &Path,
    limit: usize,
    call: Option<String>,
    partner: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let conn = open_db(db)?;
    let rows = store::sales::list(
        &conn,
        call.as_deref(),
        partner.as_deref(),
        limit.min(10_000),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:>6}  {:<24}  {:<12}  {:<6}  {:>6}  {:<36}  {:>9}  WHY",
        "ID", "RECEIVED", "PARTNER", "HOW", "STATUS", "CALL", "AMOUNT"
    );
    for r in rows {
        let amount = r
            .amount_cents
            .map(|c| format!("{}.{:02}", c / 100, (c % 100).abs()))
            .unwrap_or_default();
        println!(
            "{:>6}  {:<24}  {:<12}  {:<6}  {:>6}  {:<36}  {:>9}  {}",
            r.id,
            r.received_at,
            r.partner_id.or(r.username).unwrap_or_default(),
            r.how.unwrap_or_default(),
            r.status,
            r.call_id.unwrap_or_default(),
            amount,
            r.error.unwrap_or_default()
        );
    }
    Ok(())
}

fn providers_cmd(cfg: &config::Config, json: bool) -> anyhow::Result<()> {
    let v = c2cd::http::admin::ask_daemon(cfg, "/v1/providers")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<16}  {:<5}  {:<9}  {:<9}  {:>9}  {:>8}  LAST ERROR",
        "NAME", "KIND", "AVAILABLE", "BREAKER", "IN FLIGHT", "FAILURES"
    );
    for p in v["providers"].as_array().into_iter().flatten() {
        println!(
            "{:<16}  {:<5}  {:<9}  {:<9}  {:>9}  {:>8}  {}",
            p["name"].as_str().unwrap_or_default(),
            p["kind"].as_str().unwrap_or_default(),
            p["available"],
            p["breaker"].as_str().unwrap_or_default(),
            p["in_flight"],
            p["failures"],
            p["last_error"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}

/// A window bound: RFC 3339 with its offset, or a date's midnight in `tz`.
fn instant(s: &str, tz: &jiff::tz::TimeZone) -> anyhow::Result<i64> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    // A date alone: a time without its offset would be read as the date.
    let day: jiff::civil::Date = Some(s)
        .filter(|s| s.len() == 10)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!("{s:?} is neither RFC 3339 with an offset nor a date (YYYY-MM-DD)")
        })?;
    Ok(day.to_zoned(tz.clone())?.timestamp().as_millisecond())
}

fn export_cmd(
    cfg: &config::Config,
    window: Option<(String, String)>,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tz = jiff::tz::TimeZone::get(&cfg.roundtrip.export_timezone)?;
    let dir = dir.unwrap_or_else(|| cfg.roundtrip.export_dir.clone());
    let db = &cfg.database.path;
    // Writes beside the running daemon (the exports table): SQLite serialises
    // them with the daemon's writer (WAL, busy timeout).
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .with_context(|| format!("while opening {}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    match window {
        Some((since, until)) => {
            let (since, until) = (instant(&since, &tz)?, instant(&until, &tz)?);
            anyhow::ensure!(since < until, "--since must come before --until");
            let stem = format!(
                "c2cd-sales-{}_{}",
                c2cd::core::format_ms(since).replace(':', ""),
                c2cd::core::format_ms(until).replace(':', "")
            );
            let (files, calls) = c2cd::export::write(&conn, &dir, &stem, since, until)?;
            for f in files {
                println!("{}: {calls} calls", f.display());
            }
        }
        None => {
            let done = c2cd::export::run_due(&conn, &dir, &tz, jiff::Timestamp::now())?;
            if done.is_empty() {
                println!("nothing to export: every day up to yesterday is written");
            }
            for (day, files, calls) in done {
                for f in files {
                    println!("{day}: {}: {calls} calls", f.display());
                }
            }
        }
    }
    Ok(())
}

fn backup_cmd(
    db: &Path,
    file: Option<PathBuf>,
    dir: Option<PathBuf>,
    keep: usize,
) -> anyhow::Result<()> {
    let (dest, dir) = match (file, dir) {
        (Some(f), _) => (f, None),
        (None, Some(d)) => {
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            (d.join(format!("c2cd-{stamp}.db")), Some(d))
        }
        (None, None) => anyhow::bail!("name a FILE or --dir DIR"),
    };
    let size =
        store::backup(db, &dest).with_context(|| format!("while backing up {}", db.display()))?;
    println!("{}: {size} bytes", dest.display());
    if let Some(dir) = dir {
        // The names sort by time: keep the newest `keep`.
        let mut copies: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("c2cd-") && n.ends_with(".db"))
            })
            .collect();
        copies.sort();
        let excess = copies.len().saturating_sub(keep);
        for old in copies.into_iter().take(excess) {
            std::fs::remove_file(&old)
                .with_context(|| format!("while removing {}", old.display()))?;
            println!("{}: removed", old.display());
        }
    }
    Ok(())
}

/// The c2cd(8) man page: clap's synopsis and options, each command with its
/// own usage and options, then signals, files and exit status.
fn man_page() -> String {
    use clap::CommandFactory;
    use std::fmt::Write;
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration");
    let mut out = Vec::new();
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let mut m = String::from_utf8_lossy(&out).into_owned();
    m.push_str(".SH DESCRIPTION\nc2cd is a click\\-to\\-call gateway for telephony boxes. Partners ask it over HTTP, in a dialect they already speak (so far XIP: GET or POST /request/call.php), to connect two phone parties; c2cd authenticates each request, records it durably in its SQLite database, has a click\\-to\\-call server (the built\\-in simulator or an upstream XIP server) place the call, follows it, and answers in the partner's format. Every answer carries a C2C\\-Call\\-Id header.\n.PP\nThe configuration is described in\n.BR c2cd.toml (5).\nWithout \\-\\-config and without /etc/c2cd/c2cd.toml, c2cd serve runs an embedded demo default on 127.0.0.1:8080 and says so in its first log line.\n");
    m.push_str(".SH COMMANDS\n");
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let mut sub = sub.clone().bin_name(format!("c2cd {}", sub.get_name()));
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").replace('-', "\\-");
        let _ = writeln!(m, ".SS {}", sub.get_name());
        if let Some(about) = sub.get_about() {
            let _ = writeln!(m, "{}", about.to_string().replace('-', "\\-"));
        }
        let _ = writeln!(m, ".PP\n.B {usage}");
        for nested in sub.get_subcommands().filter(|n| n.get_name() != "help") {
            let about = nested
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let _ = writeln!(
                m,
                ".TP\n.B {}\n{}",
                nested.get_name(),
                about.replace('-', "\\-")
            );
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            let name = match (arg.get_long(), arg.get_short()) {
                (Some(l), Some(s)) => format!("\\-{s}, \\-\\-{l}"),
                (Some(l), None) => format!("\\-\\-{l}"),
                _ => arg.get_id().to_string().to_uppercase(),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let _ = writeln!(m, ".TP\n.B {name}\n{}", help.replace('-', "\\-"));
        }
    }
    m.push_str(".SH SIGNALS\n.TP\n.B SIGTERM, SIGINT\nStop accepting, let requests under way finish (up to server.drain_timeout), flush the database and exit 0.\n.TP\n.B SIGHUP\nReload the configuration; a file with errors is refused and the running configuration stays.\n");
    m.push_str(".SH ENVIRONMENT\n.TP\n.B SSL_CERT_FILE, SSL_CERT_DIR\nThe certificates trusted for https callbacks and upstream servers: a PEM bundle, and directories of PEM files. When neither is set, the system trust store (/etc/ssl/certs on Debian). Read once, at start.\n");
    m.push_str(".SH FILES\n.TP\n.I /etc/c2cd/c2cd.toml\nThe configuration.\n.TP\n.I /var/lib/c2cd/c2cd.db\nThe database; before a schema upgrade it is copied to c2cd.db.vN.bak beside it.\n.TP\n.I /var/lib/c2cd/backups/\nThe nightly copies of c2cd\\-backup.timer.\n");
    m.push_str(".SH EXIT STATUS\n0 on success; 64 when the configuration or the command line is wrong (the message names the file, the line and the key); 3 when c2cd block check finds a number blocked; 1 on any other failure.\n");
    m.push_str(".SH SEE ALSO\n.BR c2cd.toml (5),\n.BR systemctl (1)\n");
    m
}

fn callbacks_cmd(db: &Path, cmd: CallbacksCommand) -> anyhow::Result<()> {
    use c2cd::store::callbacks;
    match cmd {
        CallbacksCommand::List {
            limit,
            call,
            state,
            json,
        } => {
            let conn = open_db(db)?;
            let rows = callbacks::list(&conn, limit, call.as_deref(), state.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:>8}  {:<36}  {:>4}  {:<18}  {:<9}  {:>8}  {:>4}  NEXT",
                "ID", "CALL", "SEQ", "EVENT", "STATE", "ATTEMPTS", "HTTP"
            );
            for r in rows {
                println!(
                    "{:>8}  {:<36}  {:>4}  {:<18}  {:<9}  {:>8}  {:>4}  {}",
                    r.id,
                    r.call_id,
                    r.seq,
                    r.event,
                    r.state,
                    r.attempts,
                    r.last_status.map(|s| s.to_string()).unwrap_or_default(),
                    r.next_at
                );
            }
            Ok(())
        }
        CallbacksCommand::Show { id } => {
            let conn = open_db(db)?;
            match callbacks::show(&conn, id)? {
                Some(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(())
                }
                None => anyhow::bail!("no callback {id} in {}", db.display()),
            }
        }
        CallbacksCommand::Replay { id } => {
            // A one-row write beside the running daemon: SQLite serialises it with
            // the daemon's writer (WAL, busy timeout).
            let conn = rusqlite::Connection::open(db)
                .with_context(|| format!("while opening {}", db.display()))?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            if callbacks::replay(&conn, id, c2cd::core::now_ms())? {
                println!("callback {id}: queued to be sent again");
                Ok(())
            } else {
                anyhow::bail!("no callback {id} in {}", db.display())
            }
        }
    }
}
