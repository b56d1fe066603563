//! The TOML configuration: the serde schema (every key with its default), the
//! embedded demo default, and validation into typed runtime values.
//!
//! Errors name the file, the line and the key: `c2cd.toml:12: partner.provider: …`.
//! An unknown key is an error. Secrets are held in [`Secret`], which never prints.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod reference;

use crate::core::phone::valid_pattern;
use crate::core::Secret;

/// Where the operator's config lives when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/c2cd/c2cd.toml";

/// The embedded default: the simulator, a demo partner, a database in the working
/// directory, loopback only. For demos and first steps, never for a real install.
pub const EMBEDDED: &str = include_str!("demo.toml");

/// A partner's calls waiting (deferred or queued) at most, unless it says.
pub const DEFAULT_MAX_WAITING: u32 = 1000;

/// The most `[callbacks] concurrency` and `per_receiver` may be.
pub const MAX_CALLBACK_CONCURRENCY: usize = 1024;

/// The nine parameters a XIP click-to-call server receives, in the seed's order.
pub const XIP_PARAMS: [&str; 9] = [
    "RequestorPhone",
    "RequestorCID",
    "DestinationPhone",
    "DestinationCID",
    "PromptSet",
    "TimeLimit",
    "PartnerID",
    "Source",
    "Auth",
];

// ---------------------------------------------------------------------------
// The file as written (serde layer).

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    calls: RawCalls,
    #[serde(default)]
    callbacks: RawCallbacks,
    #[serde(default)]
    guard: RawGuard,
    #[serde(default)]
    spokn: RawSpokn,
    #[serde(default)]
    airtel: RawAirtel,
    #[serde(default)]
    roundtrip: RawRoundTrip,
    #[serde(default)]
    cloud9: RawCloud9,
    #[serde(default)]
    partner: Vec<RawPartner>,
    #[serde(default)]
    provider: Vec<RawProvider>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// TCP listeners. Default `["127.0.0.1:8080"]`.
    listen: Option<Vec<String>>,
    /// Open connections at most; more are answered 503 and closed. Default 1024.
    max_connections: Option<usize>,
    /// Open connections from one source address (IPv6: one /64) at most;
    /// more are answered 503 and closed. Default 256.
    max_connections_per_source: Option<usize>,
    /// Largest request body in bytes; larger gets 413. Default 65536.
    max_body_bytes: Option<usize>,
    /// Largest request head (request line and headers) in bytes; larger gets 431. Default 16384.
    max_header_bytes: Option<usize>,
    /// Time a client has to send the request head before the connection is closed. Default "10s".
    header_read_timeout: Option<String>,
    /// Time a client has to send the request body; slower gets 408. Default "10s".
    body_read_timeout: Option<String>,
    /// On SIGTERM, time in-flight requests have to finish. Default "30s".
    drain_timeout: Option<String>,
    /// The URL partners reach c2cd at, for links c2cd hands out (recordings).
    /// Default none: links are paths.
    public_url: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    /// SQLite file. Default "/var/lib/c2cd/c2cd.db" (embedded demo: "./c2cd.db").
    path: Option<String>,
    /// Writes waiting for the writer at most; beyond, requests get an overload answer. Default 10000.
    queue: Option<usize>,
    /// Writes committed in one transaction at most. Default 1024.
    batch: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    /// "stderr" (the journal under systemd) or "syslog". Default "stderr".
    target: Option<String>,
    /// error, warn, info, debug or trace. Default "info".
    level: Option<String>,
    /// The syslog socket for target "syslog". Default: /dev/log (or the system's equivalent).
    syslog_socket: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    /// Bearer token for `/v1/`; without one the admin API answers 403. At least 16 characters.
    token: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCalls {
    /// Time past a call's time limit after which a call not ended is reconciled. Default "5m".
    grace: Option<String>,
    /// How often overdue calls are looked for. Default "30s".
    reconcile_every: Option<String>,
    /// How long a participant rings before it counts as not answering, when the
    /// request does not say. Default "30s".
    ring_timeout: Option<String>,
    /// Failures in a row that open a provider's circuit breaker. Default 3.
    breaker_failures: Option<usize>,
    /// How long an open breaker keeps calls away before a probe. Default "30s".
    breaker_cooldown: Option<String>,
}

/// A string, or a list of them.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    /// A repeat of a call (same partner, A and B) within this long is answered
    /// with the earlier call. Default "0s" (off); a partner may say otherwise.
    dedupe_window: Option<String>,
    /// At most COUNT calls to one A number in PERIOD, across partners. Default none.
    number_limits: Option<Vec<String>>,
    /// Refuse numbers libphonenumber's metadata says no number can be. Default true.
    check_numbers: Option<bool>,
    /// Failed authentications from one source before it is locked out:
    /// COUNT/PERIOD or "off". Default "20/1m".
    auth_failures_per_source: Option<String>,
    /// Failed authentications naming one partner before it is locked out
    /// (its known sources excepted): COUNT/PERIOD or "off". Default "100/1m".
    auth_failures_per_partner: Option<String>,
    /// How long a lock lasts. Default "5m".
    auth_lockout: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpokn {
    /// The number (E.164) shown to a phone when the other party is a local
    /// extension (a Spokn ID), which a phone cannot be shown. Default none:
    /// such a phone is shown no caller ID.
    access_number: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAirtel {
    /// The country code of Airtel's 10-digit numbers. Default "91".
    country_code: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoundTrip {
    /// How far a posted CallStart may be from the call's start. Default "900s".
    tolerance: Option<String>,
    /// Where `c2cd export` writes the nightly files. Default "/var/lib/c2cd/exports".
    export_dir: Option<String>,
    /// The time zone whose days the export covers. Default "America/Los_Angeles".
    export_timezone: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCloud9 {
    /// Where Cloud9 asks. Default "/cloud9/moc".
    path: Option<String>,
    /// The carrier IDs Cloud9 sends; none turns the endpoint off.
    carrier_ids: Option<Vec<String>>,
    /// Addresses (IP or CIDR) the requests may come from. Default: any.
    sources: Option<Vec<String>>,
    /// "c2cd" (balances in the database) or "carrier" (USER_BALANCE). Default "carrier".
    balance_holder: Option<String>,
    /// Added per minute to IOT_CHARGE when IOT is 1. Default "0".
    iot_markup: Option<String>,
    /// "listed" (only [[cloud9.subscriber]]) or "any". Default "listed".
    subscribers: Option<String>,
    /// For a destination no rule names: "allow" or "deny". Default "allow".
    default_action: Option<String>,
    display_allowed: Option<String>,
    display_denied: Option<String>,
    display_no_credit: Option<String>,
    display_offline: Option<String>,
    display_error: Option<String>,
    rate: Option<Vec<RawCloud9Rate>>,
    rule: Option<Vec<RawCloud9Rule>>,
    subscriber: Option<Vec<RawCloud9Subscriber>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud9Rate {
    /// `+` and digits; the longest matching prefix wins.
    prefix: String,
    /// The price of a minute, "0.10".
    per_minute: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawCloud9Rule {
    prefix: String,
    /// "allow", "deny" or "reroute".
    action: String,
    /// With "reroute": where to, `+` and digits.
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud9Subscriber {
    msisdn: String,
    /// false: the subscriber may not call. Default true.
    enabled: Option<bool>,
    /// Rules for this subscriber only, before the others.
    rule: Option<Vec<RawCloud9Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentPool {
    /// What an addParticipant component names in `agentPoolId`.
    id: String,
    /// The agents' 10-digit numbers, in the order round robin takes them.
    agents: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    /// E.164 prefix with `+` (`+1`, `+4420`); `+` alone matches every number.
    prefix: String,
    /// US cents per minute.
    cents_per_minute: f64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCallbacks {
    /// Attempts per callback at most. Default 30.
    attempts: Option<usize>,
    /// A callback older than this is given up. Default "24h".
    max_age: Option<String>,
    /// Time one attempt may take. Default "10s".
    timeout: Option<String>,
    /// The first retry's delay; each next one doubles, with jitter. Default "1s".
    backoff: Option<String>,
    /// The longest delay between attempts. Default "10m".
    max_backoff: Option<String>,
    /// Bytes of a receiver's answer read at most. Default 16384.
    max_response_bytes: Option<usize>,
    /// Attempts under way at once at most. Default 256.
    concurrency: Option<usize>,
    /// Attempts under way to one receiver at once at most. Default 16.
    per_receiver: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartner {
    /// The partner's id; for XIP, the PartnerID it sends.
    id: String,
    /// A name for operators.
    name: Option<String>,
    /// XIP: the MD5 shared secret.
    secret: Option<String>,
    /// The front doors this partner may use. Default ["xip"].
    dialects: Option<Vec<String>>,
    /// The provider its calls go to, or a route: providers tried in order.
    /// Not for a partner without dialects (a call center posting sales).
    provider: Option<OneOrMany>,
    /// XIP PromptSet sent upstream. Default "XIP1".
    prompt_set: Option<String>,
    /// XIP Source sent upstream. Default "XIP1".
    source: Option<String>,
    /// XIP TimeLimit in seconds sent upstream. Default 7200.
    time_limit: Option<u32>,
    /// HTTP Basic user for the Basic-auth dialects.
    username: Option<String>,
    /// HTTP Basic password for the Basic-auth dialects.
    password: Option<String>,
    /// false keeps the partner in the database but refuses its requests. Default true.
    enabled: Option<bool>,
    /// Where the events of this partner's calls are reported (native JSON).
    callback_url: Option<String>,
    /// The only hosts callbacks for this partner may go to.
    callback_hosts: Option<Vec<String>>,
    /// HMAC-SHA256 keys; each signs every callback, so a receiver may verify with any.
    callback_secrets: Option<Vec<String>>,
    /// Spokn: may set apartycid, bpartycid and url. Default false.
    enterprise: Option<bool>,
    /// Spokn: c2cd holds the partner's credit (balance account
    /// partner:<id>): a call its balance buys no minute of is refused 108.
    balance: Option<bool>,
    /// Spokn: what calls cost, by destination prefix (longest match wins).
    rate: Option<Vec<RawRate>>,
    /// Airtel: the customerId the partner sends.
    customer_id: Option<String>,
    /// Airtel: the callFlowIds the partner may start.
    call_flow_ids: Option<Vec<String>>,
    /// Airtel: the 10-digit virtual numbers the partner may show as callerId.
    /// Default: any.
    caller_ids: Option<Vec<String>>,
    /// Airtel: the agent pools ROUND ROBIN takes agents from.
    agent_pool: Option<Vec<RawAgentPool>>,
    /// RoundTrip: "full" (sales for any call) or "restricted" (only for calls
    /// to roundtrip_targets). Default: no RoundTrip access.
    roundtrip: Option<String>,
    /// RoundTrip: the 10-digit numbers a restricted partner takes calls at.
    roundtrip_targets: Option<Vec<String>>,
    /// A repeat within this long is a replay. Default [guard] dedupe_window.
    dedupe_window: Option<String>,
    /// Calls a partner may start: COUNT/PERIOD. Default no limit.
    max_rate: Option<String>,
    /// How many calls over max_rate may start at once. Default max_rate's COUNT.
    burst: Option<u32>,
    /// Calls in progress at most. Default 0: no limit.
    max_calls: Option<u32>,
    /// Calls in progress to one B number at most (an agent's line). Default 0: no limit.
    max_calls_per_b: Option<u32>,
    /// How long a call to a busy B waits for it to be free. Default "0s": refused.
    b_queue: Option<String>,
    /// Calls waiting (deferred or queued) at most. Default 1000.
    max_waiting: Option<u32>,
    /// When its calls may be placed: ["mon-fri 09:00-18:00"]. Default: always.
    hours: Option<Vec<String>>,
    /// Days closed: "2026-12-25" once, "12-25" every year.
    holidays: Option<Vec<String>>,
    /// The zone its hours are in. Default: the box's.
    timezone: Option<String>,
    /// Read the hours in A's zone where A's country has one. Default false.
    hours_in_called_zone: Option<bool>,
    /// "refuse" or "defer" a request outside the hours. Default "refuse".
    outside_hours: Option<String>,
    /// Caller IDs its calls may present besides the parties' own numbers:
    /// E.164, a last `*` for any rest. Default: any.
    allowed_caller_ids: Option<Vec<String>>,
    /// What A is always shown, whatever the request says (E.164).
    mask_a: Option<String>,
    /// What B is always shown (E.164).
    mask_b: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    /// sim | xip
    kind: String,
    /// Calls it places or follows at once at most. Default 0: no limit.
    max_channels: Option<u32>,
    // xip
    url: Option<String>,
    method: Option<String>,
    timeout: Option<String>,
    secret: Option<String>,
    auth_fields: Option<Vec<String>>,
    max_response_bytes: Option<usize>,
    // sim
    ring: Option<String>,
    talk: Option<String>,
    busy: Option<Vec<String>>,
    no_answer: Option<Vec<String>>,
    fail: Option<Vec<String>>,
    silent: Option<Vec<String>>,
    // ami
    address: Option<String>,
    username: Option<String>,
    channel: Option<String>,
    context: Option<String>,
    exten: Option<String>,
    dial: Option<String>,
    recording: Option<String>,
    recordings_dir: Option<String>,
    variables: Option<Vec<String>>,
    // spokn
    enterprise: Option<bool>,
    // airtel
    customer_id: Option<String>,
    call_flow_id: Option<String>,
    caller_id: Option<String>,
}

// ---------------------------------------------------------------------------
// The validated runtime values.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Embedded => f.write_str("<embedded demo default>"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    /// What is wrong but not refused (a world-readable file of secrets), for
    /// `check-config` and the log, each `FILE: key: problem`.
    pub warnings: Vec<String>,
    pub server: Server,
    pub database: Database,
    pub log: Log,
    pub admin: Admin,
    pub calls: Calls,
    pub callbacks: Callbacks,
    pub guard: Guard,
    pub spokn: Spokn,
    pub airtel: Airtel,
    pub roundtrip: RoundTrip,
    pub cloud9: Cloud9,
    pub partners: Vec<Partner>,
    pub providers: Vec<ProviderConfig>,
}

/// RoundTrip sales data: how matching by search behaves.
#[derive(Debug, Clone)]
pub struct RoundTrip {
    /// How far a posted CallStart may be from the call's start (±).
    pub tolerance: Duration,
    /// Where `c2cd export` writes the nightly files.
    pub export_dir: std::path::PathBuf,
    /// The IANA time zone whose days the export covers.
    pub export_timezone: String,
}

/// Cloud9 call-back authorisation (seed 004).
#[derive(Debug, Clone, Default)]
pub struct Cloud9 {
    pub path: String,
    /// Empty: the endpoint is off.
    pub carrier_ids: Vec<Secret>,
    /// (network, prefix length); empty: any source.
    pub sources: Vec<(std::net::IpAddr, u8)>,
    /// Whether c2cd holds the balances (else USER_BALANCE is used).
    pub holds_balance: bool,
    pub iot_markup: crate::core::money::Money,
    /// Whether MSISDNs not listed may call.
    pub any_subscriber: bool,
    pub default_allow: bool,
    pub display: Cloud9Display,
    /// (prefix, per minute), any order: the longest match wins.
    pub rates: Vec<(String, crate::core::money::Money)>,
    pub rules: Vec<Cloud9Rule>,
    pub subscribers: Vec<Cloud9Subscriber>,
}

impl Cloud9 {
    /// Whether `path` is the endpoint, and it is on (carriers configured).
    pub fn serves(&self, path: &str) -> bool {
        !self.carrier_ids.is_empty() && path == self.path
    }
}

/// The handset texts of each decision, as configured (sanitised when sent).
#[derive(Debug, Clone, Default)]
pub struct Cloud9Display {
    pub allowed: String,
    pub denied: String,
    pub no_credit: String,
    pub offline: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cloud9Action {
    Allow,
    Deny,
    Reroute(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud9Rule {
    pub prefix: String,
    pub action: Cloud9Action,
}

#[derive(Debug, Clone)]
pub struct Cloud9Subscriber {
    pub msisdn: String,
    pub enabled: bool,
    pub rules: Vec<Cloud9Rule>,
}

/// What RoundTrip sales data a partner may post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundTripAccess {
    /// For any call.
    Full,
    /// Only for calls whose Target is one of these (E.164, `+1…`).
    Restricted(Vec<String>),
}

/// The Spokn dialect's settings.
#[derive(Debug, Clone, Default)]
pub struct Spokn {
    /// Shown to a phone whose other party is a local extension.
    pub access_number: Option<crate::core::phone::E164>,
}

/// The Airtel dialect's settings.
#[derive(Debug, Clone)]
pub struct Airtel {
    /// Prefixed to a 10-digit number to make it E.164 (`91`).
    pub country_code: String,
}

/// An Airtel agent pool: the agents ROUND ROBIN rotates through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPool {
    pub id: String,
    pub agents: Vec<String>,
}

/// What calls to numbers starting with `prefix` cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub prefix: String,
    /// A minute's price (US dollars; `cents_per_minute` / 100, exactly to a
    /// hundredth of a cent).
    pub per_minute: crate::core::money::Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub max_connections: usize,
    /// Of them, from one source (`crate::lockout::Source`).
    pub max_connections_per_source: usize,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub drain_timeout: Duration,
    /// Prefixed to the links c2cd hands out; empty: links are paths.
    pub public_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub path: PathBuf,
    pub queue: usize,
    pub batch: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Syslog,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub target: LogTarget,
    pub level: log::LevelFilter,
    pub syslog_socket: Option<PathBuf>,
}

/// How callbacks are delivered.
#[derive(Debug, Clone)]
pub struct Callbacks {
    pub attempts: usize,
    pub max_age: Duration,
    pub timeout: Duration,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub max_response_bytes: usize,
    /// Attempts under way at once at most.
    pub concurrency: usize,
    /// Attempts under way to one receiver (scheme, host and port) at most.
    pub per_receiver: usize,
}

/// How calls are followed to their end.
#[derive(Debug, Clone)]
pub struct Calls {
    pub grace: Duration,
    pub reconcile_every: Duration,
    /// The ring timeout of requests that name none (all one-number dialects).
    pub ring_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub token: Option<Secret>,
}

/// The front doors c2cd speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Xip,
    /// c2cd's own JSON API, `POST /v1/calls`, with HTTP Basic auth.
    Native,
    /// Spokn's click-to-call API, `POST /c2c/1.0/call`, with HTTP Basic auth.
    Spokn,
    /// Airtel's click-to-call workflow, `POST /v2/execute/workflow`, HTTP Basic.
    Airtel,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Xip => "xip",
            Dialect::Native => "native",
            Dialect::Spokn => "spokn",
            Dialect::Airtel => "airtel",
        }
    }

    /// Whether partners authenticate with HTTP Basic (`username`, `password`).
    pub fn basic_auth(self) -> bool {
        !matches!(self, Dialect::Xip)
    }
}

#[derive(Debug, Clone)]
pub struct Partner {
    pub id: String,
    pub name: String,
    pub secret: Option<Secret>,
    pub dialects: Vec<Dialect>,
    /// The first provider of its route.
    pub provider: String,
    /// The providers its calls go to, tried in order: one that is down, whose
    /// breaker is open, or that cannot place a call passes it to the next.
    pub route: Vec<String>,
    pub prompt_set: String,
    pub source: String,
    pub time_limit: u32,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub enabled: bool,
    pub callback_url: Option<hyper::Uri>,
    pub callback_hosts: Vec<String>,
    pub callback_secrets: Vec<Secret>,
    /// Spokn: may set apartycid, bpartycid and url.
    pub enterprise: bool,
    /// Spokn: the partner's rate table.
    pub rates: Vec<Rate>,
    /// Airtel: the customerId, callFlowIds, callerIds and agent pools.
    pub customer_id: Option<String>,
    pub call_flow_ids: Vec<String>,
    pub caller_ids: Vec<String>,
    pub agent_pools: Vec<AgentPool>,
    /// RoundTrip: which calls' sales data the partner may post, if any.
    pub roundtrip: Option<RoundTripAccess>,
    /// Spokn: c2cd holds the partner's credit, as balance `partner:<id>`.
    pub balance: bool,
    /// The guard rails' limits of its calls.
    pub guard: PartnerGuard,
}

/// The guard rails every partner shares (`[guard]`).
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The partners' dedupe window, unless they say.
    pub dedupe_window: Duration,
    /// Calls to one A number, across partners.
    pub number_limits: Vec<crate::guard::Window>,
    /// Numbers must be valid by libphonenumber's metadata.
    pub check_numbers: bool,
    /// Failed authentications before a lockout (`crate::lockout`).
    pub auth: AuthLimits,
}

/// How many failed authentications lock a source or a partner out, and for
/// how long; `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    pub per_source: Option<crate::guard::Window>,
    pub per_partner: Option<crate::guard::Window>,
    pub lockout: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            per_source: Some(crate::guard::Window {
                count: 20,
                per: Duration::from_secs(60),
            }),
            per_partner: Some(crate::guard::Window {
                count: 100,
                per: Duration::from_secs(60),
            }),
            lockout: Duration::from_secs(300),
        }
    }
}

/// When a partner's calls may be placed.
#[derive(Debug, Clone)]
pub struct Opening {
    pub hours: crate::core::hours::Hours,
    /// The zone the hours are read in.
    pub zone: jiff::tz::TimeZone,
    /// Read them in A's zone instead, where A's country has one.
    pub called_zone: bool,
    /// Defer a request outside them to the next opening, rather than refuse it.
    pub defer: bool,
}

/// A partner's guard rails; 0 is no limit.
#[derive(Debug, Clone, Default)]
pub struct PartnerGuard {
    /// None: always open.
    pub opening: Option<std::sync::Arc<Opening>>,
    /// Caller IDs it may present besides the parties' numbers (`+…`, a last
    /// `*`); empty: any.
    pub allowed_caller_ids: Vec<String>,
    /// What A and B are always shown.
    pub mask_a: Option<crate::core::phone::E164>,
    pub mask_b: Option<crate::core::phone::E164>,
    pub dedupe_window: Duration,
    pub max_rate: Option<crate::guard::Window>,
    pub burst: u32,
    pub max_calls: u32,
    pub max_calls_per_b: u32,
    /// How long a call to a busy B waits for it; zero: refused at once.
    pub b_queue: Duration,
    /// Its calls waiting (deferred to its next opening or queued for a busy
    /// B) at most: the waiting calls are a queue, and every queue is bounded.
    pub max_waiting: u32,
}

impl Partner {
    /// The balance account of a partner whose credit c2cd holds.
    pub fn balance_account(&self) -> String {
        format!("partner:{}", self.id)
    }

    /// The partner's rate for calls to `number` (US cents a minute): the longest
    /// matching prefix, else 0. Local extensions cost nothing.
    pub fn rate_for(&self, number: &str) -> crate::core::money::Money {
        if !number.starts_with('+') {
            return crate::core::money::Money::ZERO;
        }
        crate::core::money::rate_for(
            self.rates.iter().map(|r| (r.prefix.as_str(), r.per_minute)),
            number,
        )
        .unwrap_or(crate::core::money::Money::ZERO)
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Calls placed or followed at once at most; 0: no limit.
    pub max_channels: u32,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    Sim(SimConfig),
    Xip(XipConfig),
    Ami(AmiConfig),
    Spokn(SpoknUpConfig),
    Airtel(AirtelUpConfig),
}

/// An upstream Airtel click-to-call API.
#[derive(Debug, Clone)]
pub struct AirtelUpConfig {
    /// `https://…/v2/execute/workflow`.
    pub url: hyper::Uri,
    pub username: String,
    pub password: Secret,
    pub customer_id: String,
    pub call_flow_id: String,
    /// The 10-digit virtual number the parties are shown.
    pub caller_id: String,
    /// `[airtel] country_code`: numbers outside it cannot be sent.
    pub country_code: String,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

/// An upstream Spokn click-to-call API.
#[derive(Debug, Clone)]
pub struct SpoknUpConfig {
    /// `https://api.spokn.com/c2c/1.0/call`.
    pub url: hyper::Uri,
    pub username: String,
    pub password: Secret,
    /// The account may send `url`, `apartycid` and `bpartycid`: Spokn then calls
    /// c2cd back with each leg's outcome (at `[server] public_url`).
    pub enterprise: bool,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

/// A partner's `allowed_caller_ids`: `+` and digits, a last `*` for any rest.
fn caller_id_patterns(
    v: &mut Validator,
    p: &RawPartner,
    at: &dyn Fn(&'static str) -> [Seg; 3],
) -> Vec<String> {
    let list = p.allowed_caller_ids.clone().unwrap_or_default();
    for c in &list {
        let digits = c
            .strip_prefix('+')
            .map(|d| d.strip_suffix('*').unwrap_or(d));
        if !digits.is_some_and(|d| {
            !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit())
        }) {
            v.err(
                &at("allowed_caller_ids"),
                format!("{c:?} is not + and digits, with an optional last * (\"+18005550100\", \"+1800555*\")"),
            );
        }
    }
    list
}

/// An optional E.164 number with `+`.
fn e164_key(v: &mut Validator, path: &[Seg], s: Option<&str>) -> Option<crate::core::phone::E164> {
    let s = s?;
    match crate::core::phone::E164::from_canonical(s) {
        Ok(n) => Some(n),
        Err(e) => {
            v.err(path, format!("{s:?} must be E.164 with + ({e})"));
            None
        }
    }
}

/// A partner's opening hours, when it has any.
fn opening(
    v: &mut Validator,
    p: &RawPartner,
    at: &dyn Fn(&'static str) -> [Seg; 3],
) -> Option<std::sync::Arc<Opening>> {
    let zone = match p.timezone.as_deref() {
        None => jiff::tz::TimeZone::system(),
        Some(name) => match jiff::tz::TimeZone::get(name) {
            Ok(z) => z,
            Err(e) => {
                v.err(
                    &at("timezone"),
                    format!("{name:?} is not a time zone this box knows: {e}"),
                );
                return None;
            }
        },
    };
    let Some(open) = &p.hours else {
        for (key, set) in [
            ("holidays", p.holidays.is_some()),
            ("timezone", p.timezone.is_some()),
            ("hours_in_called_zone", p.hours_in_called_zone.is_some()),
            ("outside_hours", p.outside_hours.is_some()),
        ] {
            if set {
                v.err(&at(key), "needs hours");
            }
        }
        return None;
    };
    let holidays = p.holidays.clone().unwrap_or_default();
    if let Err(e) = crate::core::hours::Hours::parse(&[], &holidays) {
        v.err(&at("holidays"), e);
        return None;
    }
    let hours = match crate::core::hours::Hours::parse(open, &holidays) {
        Ok(h) => h,
        Err(e) => {
            v.err(&at("hours"), e);
            return None;
        }
    };
    let defer = match p.outside_hours.as_deref() {
        None | Some("refuse") => false,
        Some("defer") => true,
        Some(other) => {
            v.err(
                &at("outside_hours"),
                format!("{other:?} is not \"refuse\" or \"defer\""),
            );
            false
        }
    };
    Some(std::sync::Arc::new(Opening {
        hours,
        zone,
        called_zone: p.hours_in_called_zone.unwrap_or(false),
        defer,
    }))
}

/// `+` and 1 to 15 digits.
fn plus_digits(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
fn cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (
            ip.parse::<std::net::IpAddr>().ok()?,
            len.parse::<u8>().ok()?,
        ),
        None => {
            let ip: std::net::IpAddr = s.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// The `[cloud9]` table.
fn cloud9(v: &mut Validator, raw: &RawCloud9) -> Cloud9 {
    use crate::core::money::Money;
    use Seg::{Index as I, Key as K};
    let at = |k: &'static str| [K("cloud9"), K(k)];
    let path = raw.path.clone().unwrap_or_else(|| "/cloud9/moc".into());
    // Not one of the paths c2cd serves otherwise.
    let taken = ["/request/call.php", "/roundtrip", "/healthz", "/metrics"];
    let taken_tree = ["/v1", "/v2/", "/c2c/", "/callbacks/"];
    if !path.starts_with('/')
        || path.contains(['?', '#', ' '])
        || taken.contains(&path.as_str())
        || taken_tree.iter().any(|t| path.starts_with(t))
    {
        v.err(
            &at("path"),
            "must be a path of its own, e.g. /cloud9/moc (not one c2cd serves otherwise)",
        );
    }
    let carrier_ids: Vec<Secret> = raw
        .carrier_ids
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(Secret::new)
        .collect();
    if carrier_ids.iter().any(|c| c.expose().is_empty()) {
        v.err(&at("carrier_ids"), "a carrier ID must not be empty");
    }
    let mut sources = Vec::new();
    for s in raw.sources.iter().flatten() {
        match cidr(s) {
            Some(c) => sources.push(c),
            None => v.err(
                &at("sources"),
                format!("{s:?} is not an address or CIDR block"),
            ),
        }
    }
    let holds_balance = match raw.balance_holder.as_deref() {
        None | Some("carrier") => false,
        Some("c2cd") => true,
        Some(o) => {
            v.err(
                &at("balance_holder"),
                format!("{o:?} is not \"c2cd\" or \"carrier\""),
            );
            false
        }
    };
    let money = |v: &mut Validator, k: &'static str, s: &Option<String>| match s.as_deref() {
        None => Money::ZERO,
        Some(s) => match Money::parse(s) {
            Some(m) if m.0 >= 0 => m,
            _ => {
                v.err(&at(k), format!("{s:?} is not an amount like \"0.05\""));
                Money::ZERO
            }
        },
    };
    let iot_markup = money(v, "iot_markup", &raw.iot_markup);
    let any_subscriber = match raw.subscribers.as_deref() {
        None | Some("listed") => false,
        Some("any") => true,
        Some(o) => {
            v.err(
                &at("subscribers"),
                format!("{o:?} is not \"listed\" or \"any\""),
            );
            false
        }
    };
    let default_allow = match raw.default_action.as_deref() {
        None | Some("allow") => true,
        Some("deny") => false,
        Some(o) => {
            v.err(
                &at("default_action"),
                format!("{o:?} is not \"allow\" or \"deny\""),
            );
            true
        }
    };
    let text = |t: &Option<String>, d: &str| t.clone().unwrap_or_else(|| d.to_string());
    // The seed wants a message on every reply: one the handset cannot show a
    // character of is refused.
    for (k, t) in [
        ("display_allowed", &raw.display_allowed),
        ("display_denied", &raw.display_denied),
        ("display_no_credit", &raw.display_no_credit),
        ("display_offline", &raw.display_offline),
        ("display_error", &raw.display_error),
    ] {
        if t.as_deref()
            .is_some_and(|t| crate::dialect::cloud9::sanitise(t).is_empty())
        {
            v.err(
                &at(k),
                "has none of the characters a handset is shown (0-9 a-z A-Z ' . , < > \" ( ) space)",
            );
        }
    }
    let display = Cloud9Display {
        allowed: text(&raw.display_allowed, "Connecting your call"),
        denied: text(&raw.display_denied, "Call not allowed"),
        no_credit: text(&raw.display_no_credit, "Not enough credit for this call"),
        offline: text(
            &raw.display_offline,
            "Your phone cannot be reached for the call back",
        ),
        error: text(&raw.display_error, "The call cannot be placed now"),
    };
    let mut rates = Vec::new();
    for (i, r) in raw.rate.iter().flatten().enumerate() {
        let at = |k: &'static str| [K("cloud9"), K("rate"), I(i), K(k)];
        if !(r.prefix == "+" || plus_digits(&r.prefix)) {
            v.err(
                &at("prefix"),
                "must be + and up to 15 digits (+ alone matches every number)",
            );
        }
        match Money::parse(&r.per_minute) {
            Some(m) if m.0 >= 0 => rates.push((r.prefix.clone(), m)),
            _ => v.err(
                &at("per_minute"),
                format!("{:?} is not an amount like \"0.10\"", r.per_minute),
            ),
        }
    }
    let rules_of = |v: &mut Validator, list: &[RawCloud9Rule], base: &[Seg]| {
        let mut rules = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let path = |k: &'static str| {
                let mut p = base.to_vec();
                p.extend([I(i), K(k)]);
                p
            };
            if !(r.prefix == "+" || plus_digits(&r.prefix)) {
                v.err(
                    &path("prefix"),
                    "must be + and up to 15 digits (+ alone matches every number)",
                );
            }
            let action = match (r.action.as_str(), &r.to) {
                ("allow", None) => Cloud9Action::Allow,
                ("deny", None) => Cloud9Action::Deny,
                ("reroute", Some(to)) if plus_digits(to) => Cloud9Action::Reroute(to.clone()),
                ("reroute", _) => {
                    v.err(
                        &path("to"),
                        "a reroute needs to = \"+\" and the number's digits",
                    );
                    Cloud9Action::Deny
                }
                ("allow" | "deny", Some(_)) => {
                    v.err(&path("to"), "is only for action = \"reroute\"");
                    Cloud9Action::Deny
                }
                (o, _) => {
                    v.err(
                        &path("action"),
                        format!("{o:?} is not allow, deny or reroute"),
                    );
                    Cloud9Action::Deny
                }
            };
            if rules.iter().any(|q: &Cloud9Rule| q.prefix == r.prefix) {
                v.err(&path("prefix"), format!("{:?} has two rules", r.prefix));
            }
            rules.push(Cloud9Rule {
                prefix: r.prefix.clone(),
                action,
            });
        }
        rules
    };
    let rules = rules_of(
        v,
        raw.rule.as_deref().unwrap_or_default(),
        &[K("cloud9"), K("rule")],
    );
    let mut subscribers: Vec<Cloud9Subscriber> = Vec::new();
    for (i, s) in raw.subscriber.iter().flatten().enumerate() {
        let at = |k: &'static str| [K("cloud9"), K("subscriber"), I(i), K(k)];
        if !plus_digits(&s.msisdn) {
            v.err(
                &at("msisdn"),
                "must be + and the number's digits, e.g. +447700900123",
            );
        }
        if subscribers.iter().any(|q| q.msisdn == s.msisdn) {
            v.err(&at("msisdn"), format!("{:?} is listed twice", s.msisdn));
        }
        let rules = rules_of(
            v,
            s.rule.as_deref().unwrap_or_default(),
            &[K("cloud9"), K("subscriber"), I(i), K("rule")],
        );
        subscribers.push(Cloud9Subscriber {
            msisdn: s.msisdn.clone(),
            enabled: s.enabled.unwrap_or(true),
            rules,
        });
    }
    Cloud9 {
        path,
        carrier_ids,
        sources,
        holds_balance,
        iot_markup,
        any_subscriber,
        default_allow,
        display,
        rates,
        rules,
        subscribers,
    }
}

/// Why a Local channel needs `/n`.
const LOCAL_N: &str = "a Local channel must end in /n (Local/{number}@context/n): without it Asterisk optimises the channel away once bridged, and c2cd would take that for the end of the call and lose its time limit";

/// Whether `template` is a Local channel Asterisk may optimise away (no `/n`).
fn local_optimised(template: &str) -> bool {
    let is_local = template
        .get(..6)
        .is_some_and(|t| t.eq_ignore_ascii_case("local/"));
    let options = template
        .rsplit_once('@')
        .and_then(|(_, context)| context.split_once('/'))
        .map(|(_, options)| options);
    is_local && !options.is_some_and(|o| o.contains('n'))
}

/// How an AMI provider reaches B once A has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bridge {
    /// A continues in the dialplan at `context`, extension `exten` (a template
    /// of B's number), priority 1: the operator's dialplan dials B.
    Dialplan { context: String, exten: String },
    /// `Application: Dial` with B's dial string: no dialplan of c2cd's is
    /// needed, but B is one round (one participant, or several in parallel).
    Dial,
}

/// How an AMI provider records a call that asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmiRecording {
    /// The dialplan records: c2cd names the file in `C2C_RECORD`.
    Dialplan,
    /// c2cd sends `Action: MixMonitor` on A's channel once A answers (the
    /// manager user then needs `write = system`).
    MixMonitor,
    /// Recorded calls are refused (another provider of the route may take them).
    Off,
}

#[derive(Debug, Clone)]
pub struct AmiConfig {
    /// The manager, `host:port`.
    pub address: String,
    pub username: String,
    pub secret: Secret,
    /// Leg A's channel, a template of its number: `PJSIP/{number}@trunk`.
    pub channel: String,
    pub bridge: Bridge,
    /// B's dial string, a template of B's number: `PJSIP/{number}@trunk`.
    pub dial: String,
    pub recording: AmiRecording,
    /// The `CallerID` A is shown, a template of the call's caller ID for A:
    /// `"Acme" <{number}>`.
    pub caller_id: String,
    /// Where Asterisk writes recordings (its monitor directory): c2cd serves
    /// them from here.
    pub recordings_dir: std::path::PathBuf,
    /// Channel variables set on every call, `NAME=value`.
    pub variables: Vec<(String, String)>,
    /// The time a manager reply may take.
    pub timeout: Duration,
}

impl ProviderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::Sim(_) => "sim",
            ProviderKind::Xip(_) => "xip",
            ProviderKind::Ami(_) => "ami",
            ProviderKind::Spokn(_) => "spokn",
            ProviderKind::Airtel(_) => "airtel",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

#[derive(Debug, Clone)]
pub struct XipConfig {
    pub url: hyper::Uri,
    pub method: HttpMethod,
    pub timeout: Duration,
    pub secret: Secret,
    pub auth_fields: Vec<String>,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub secret: Option<Secret>,
    pub ring: Duration,
    pub talk: Duration,
    pub busy: Vec<String>,
    pub no_answer: Vec<String>,
    pub fail: Vec<String>,
    /// Legs that ring and then go silent: no end is ever reported.
    pub silent: Vec<String>,
}

impl Config {
    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.partners.iter().find(|p| p.id == id)
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    pub fn is_embedded(&self) -> bool {
        self.source == Source::Embedded
    }
}

impl Config {
    /// The keys that differ between `self` and `new` but take effect only at a
    /// restart (the rest apply on reload).
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &new.server);
        let checks = [
            ("server.listen", a.listen != b.listen),
            (
                "server.max_connections",
                a.max_connections != b.max_connections,
            ),
            (
                "server.max_header_bytes",
                a.max_header_bytes != b.max_header_bytes,
            ),
            (
                "server.header_read_timeout",
                a.header_read_timeout != b.header_read_timeout,
            ),
            ("database.path", self.database.path != new.database.path),
            ("database.queue", self.database.queue != new.database.queue),
            ("database.batch", self.database.batch != new.database.batch),
            ("log.target", self.log.target != new.log.target),
            (
                "log.syslog_socket",
                self.log.syslog_socket != new.log.syslog_socket,
            ),
        ];
        checks
            .into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(k, _)| k)
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// A config error: where it is and what is wrong, printed as `FILE:LINE: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}: {}", self.file, l, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Finds the config text: `path` if given, else [`DEFAULT_PATH`] if it exists,
/// else the embedded demo default.
pub fn read(path: Option<&Path>) -> Result<(String, Source), ConfigError> {
    let path = match path {
        Some(p) => p,
        None if Path::new(DEFAULT_PATH).exists() => Path::new(DEFAULT_PATH),
        None => return Ok((EMBEDDED.to_string(), Source::Embedded)),
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: None,
        key: "file".into(),
        message: format!("cannot read: {e}"),
    })?;
    Ok((text, Source::File(path.to_path_buf())))
}

/// Reads and validates the config (see [`read`] for where it comes from).
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let (text, source) = read(path)?;
    parse(&text, source)
}

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    load(Some(path))
}

/// A path to a key in the document: `partner`, 0, `provider`.
#[derive(Debug, Clone)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

struct Validator<'a> {
    text: &'a str,
    file: String,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err(&mut self, path: &[Seg], message: impl Into<String>) {
        let key = path
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(*k),
                Seg::Index(_) => None,
            })
            .collect::<Vec<_>>()
            .join(".");
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: locate(self.text, path),
            key,
            message: message.into(),
        });
    }

    fn duration(
        &mut self,
        path: &[Seg],
        v: &Option<String>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Some(d) if d <= max => d,
                Some(_) => {
                    self.err(
                        path,
                        format!("{s:?} is longer than the maximum {}", fmt_duration(max)),
                    );
                    default
                }
                None => {
                    self.err(
                        path,
                        format!("{s:?} is not a duration (examples: \"500ms\", \"10s\", \"2m\")"),
                    );
                    default
                }
            },
        }
    }

    /// A `COUNT/PERIOD` limit.
    fn window(&mut self, path: &[Seg], s: &str) -> Option<crate::guard::Window> {
        match crate::guard::Window::parse(s) {
            Ok(w) => Some(w),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn range(
        &mut self,
        path: &[Seg],
        v: Option<usize>,
        default: usize,
        min: usize,
        max: usize,
    ) -> usize {
        match v {
            None => default,
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.err(path, format!("{n} is out of range {min}..={max}"));
                default
            }
        }
    }

    fn token(&mut self, path: &[Seg], v: &Option<String>, default: &str) -> String {
        match v {
            None => default.to_string(),
            Some(s)
                if !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                s.clone()
            }
            Some(s) => {
                self.err(
                    path,
                    format!("{s:?} must be 1 to 32 letters, digits, '_' or '-'"),
                );
                default.to_string()
            }
        }
    }

    fn patterns(&mut self, path: &[Seg], v: &Option<Vec<String>>) -> Vec<String> {
        let list = v.clone().unwrap_or_default();
        for p in &list {
            if !valid_pattern(p) {
                self.err(
                    path,
                    format!(
                        "{p:?} is not a number pattern (digits, X for any digit, * at the end)"
                    ),
                );
            }
        }
        list
    }
}

/// Parses and validates a config text. Every problem found is reported; the first
/// is returned (check-config prints them all through [`parse_all`]).
pub fn parse(text: &str, source: Source) -> Result<Config, ConfigError> {
    parse_all(text, source).map_err(|mut v| v.remove(0))
}

/// Like [`parse`], returning every problem found.
pub fn parse_all(text: &str, source: Source) -> Result<Config, Vec<ConfigError>> {
    let file = source.to_string();
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => return Err(vec![serde_error(text, &file, &e)]),
    };
    let mut v = Validator {
        text,
        file,
        errors: Vec::new(),
    };
    let embedded = source == Source::Embedded;

    use Seg::{Index as I, Key as K};

    // [server]
    let listen_raw = raw
        .server
        .listen
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1:8080".into()]);
    let mut listen = Vec::new();
    if listen_raw.is_empty() {
        v.err(
            &[K("server"), K("listen")],
            "needs at least one address, e.g. [\"127.0.0.1:8080\"]",
        );
    }
    for (i, a) in listen_raw.iter().enumerate() {
        match a.parse::<SocketAddr>() {
            Ok(sa) => listen.push(sa),
            Err(_) => v.err(
                &[K("server"), K("listen"), I(i)],
                format!("{a:?} is not an IP:port address"),
            ),
        }
    }
    let s = &raw.server;
    let server = Server {
        listen,
        max_connections: v.range(
            &[K("server"), K("max_connections")],
            s.max_connections,
            1024,
            1,
            1_000_000,
        ),
        max_connections_per_source: v.range(
            &[K("server"), K("max_connections_per_source")],
            s.max_connections_per_source,
            256,
            1,
            1_000_000,
        ),
        max_body_bytes: v.range(
            &[K("server"), K("max_body_bytes")],
            s.max_body_bytes,
            65536,
            1024,
            16 << 20,
        ),
        max_header_bytes: v.range(
            &[K("server"), K("max_header_bytes")],
            s.max_header_bytes,
            16384,
            8192,
            1 << 20,
        ),
        header_read_timeout: v.duration(
            &[K("server"), K("header_read_timeout")],
            &s.header_read_timeout,
            Duration::from_secs(10),
            Duration::from_secs(300),
        ),
        body_read_timeout: v.duration(
            &[K("server"), K("body_read_timeout")],
            &s.body_read_timeout,
            Duration::from_secs(10),
            Duration::from_secs(300),
        ),
        drain_timeout: v.duration(
            &[K("server"), K("drain_timeout")],
            &s.drain_timeout,
            Duration::from_secs(30),
            Duration::from_secs(3600),
        ),
        public_url: match s.public_url.as_deref() {
            None => String::new(),
            Some(u) => match u.parse::<hyper::Uri>() {
                Ok(uri)
                    if is_web(&uri)
                        && uri.query().is_none()
                        && !uri.authority().is_some_and(|a| a.as_str().contains('@')) =>
                {
                    u.trim_end_matches('/').to_string()
                }
                _ => {
                    v.err(
                        &[K("server"), K("public_url")],
                        format!("{u:?} is not an http:// or https:// URL without user:password@ or query"),
                    );
                    String::new()
                }
            },
        },
    };
    if server.header_read_timeout.is_zero() {
        v.err(
            &[K("server"), K("header_read_timeout")],
            "must be more than 0s",
        );
    }
    if server.body_read_timeout.is_zero() {
        v.err(
            &[K("server"), K("body_read_timeout")],
            "must be more than 0s",
        );
    }

    // [database]
    let d = &raw.database;
    let default_db = if embedded {
        "c2cd.db"
    } else {
        "/var/lib/c2cd/c2cd.db"
    };
    let db_path = d.path.clone().unwrap_or_else(|| default_db.into());
    if db_path.is_empty() {
        v.err(&[K("database"), K("path")], "must not be empty");
    }
    let database = Database {
        path: PathBuf::from(db_path),
        queue: v.range(&[K("database"), K("queue")], d.queue, 10_000, 1, 1_000_000),
        batch: v.range(&[K("database"), K("batch")], d.batch, 1024, 1, 100_000),
    };

    // [log]
    let target = match raw.log.target.as_deref() {
        None | Some("stderr") => LogTarget::Stderr,
        Some("syslog") => LogTarget::Syslog,
        Some(o) => {
            v.err(
                &[K("log"), K("target")],
                format!("{o:?} is not one of \"stderr\", \"syslog\""),
            );
            LogTarget::Stderr
        }
    };
    let level = match raw
        .log
        .level
        .as_deref()
        .unwrap_or("info")
        .parse::<log::LevelFilter>()
    {
        Ok(l) => l,
        Err(_) => {
            v.err(
                &[K("log"), K("level")],
                "must be one of error, warn, info, debug, trace, off",
            );
            log::LevelFilter::Info
        }
    };
    let syslog_socket = raw.log.syslog_socket.clone().map(PathBuf::from);
    if syslog_socket.is_some() && target != LogTarget::Syslog {
        v.err(
            &[K("log"), K("syslog_socket")],
            "is only used with target = \"syslog\"",
        );
    }
    let log = Log {
        target,
        level,
        syslog_socket,
    };

    // [admin]
    let token = match &raw.admin.token {
        Some(t) if t.len() < 16 => {
            v.err(&[K("admin"), K("token")], "must be at least 16 characters");
            None
        }
        Some(t) => Some(Secret::new(t.clone())),
        None => None,
    };
    let admin = Admin { token };

    // [callbacks]
    let cb = &raw.callbacks;
    let callbacks = Callbacks {
        attempts: v.range(&[K("callbacks"), K("attempts")], cb.attempts, 30, 1, 1000),
        max_age: v.duration(
            &[K("callbacks"), K("max_age")],
            &cb.max_age,
            Duration::from_secs(86400),
            Duration::from_secs(7 * 86400),
        ),
        timeout: v.duration(
            &[K("callbacks"), K("timeout")],
            &cb.timeout,
            Duration::from_secs(10),
            Duration::from_secs(120),
        ),
        backoff: v.duration(
            &[K("callbacks"), K("backoff")],
            &cb.backoff,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        ),
        max_backoff: v.duration(
            &[K("callbacks"), K("max_backoff")],
            &cb.max_backoff,
            Duration::from_secs(600),
            Duration::from_secs(86400),
        ),
        max_response_bytes: v.range(
            &[K("callbacks"), K("max_response_bytes")],
            cb.max_response_bytes,
            16384,
            1024,
            1 << 20,
        ),
        concurrency: v.range(
            &[K("callbacks"), K("concurrency")],
            cb.concurrency,
            256,
            1,
            MAX_CALLBACK_CONCURRENCY,
        ),
        per_receiver: v.range(
            &[K("callbacks"), K("per_receiver")],
            cb.per_receiver,
            16,
            1,
            MAX_CALLBACK_CONCURRENCY,
        ),
    };
    if callbacks.timeout.is_zero() || callbacks.backoff.is_zero() {
        v.err(
            &[K("callbacks")],
            "timeout and backoff must be more than 0s",
        );
    }

    // [calls]
    let calls = Calls {
        grace: v.duration(
            &[K("calls"), K("grace")],
            &raw.calls.grace,
            Duration::from_secs(300),
            Duration::from_secs(86400),
        ),
        reconcile_every: v.duration(
            &[K("calls"), K("reconcile_every")],
            &raw.calls.reconcile_every,
            Duration::from_secs(30),
            Duration::from_secs(3600),
        ),
        ring_timeout: v.duration(
            &[K("calls"), K("ring_timeout")],
            &raw.calls.ring_timeout,
            crate::core::plan::DEFAULT_RING_TIMEOUT,
            crate::core::plan::RING_TIMEOUT_RANGE.1,
        ),
        breaker_failures: u32::try_from(v.range(
            &[K("calls"), K("breaker_failures")],
            raw.calls.breaker_failures,
            3,
            1,
            1000,
        ))
        .unwrap_or(3),
        breaker_cooldown: v.duration(
            &[K("calls"), K("breaker_cooldown")],
            &raw.calls.breaker_cooldown,
            Duration::from_secs(30),
            Duration::from_secs(3600),
        ),
    };
    if calls.ring_timeout < Duration::from_secs(1) {
        v.err(&[K("calls"), K("ring_timeout")], "must be at least 1s");
    }
    if calls.reconcile_every < Duration::from_millis(100) {
        v.err(
            &[K("calls"), K("reconcile_every")],
            "must be at least 100ms",
        );
    }

    // [[provider]]
    let mut providers: Vec<ProviderConfig> = Vec::new();
    for (i, p) in raw.provider.iter().enumerate() {
        let at = |k: &'static str| [K("provider"), I(i), K(k)];
        if p.name.is_empty() {
            v.err(&at("name"), "must not be empty");
        }
        if providers.iter().any(|q| q.name == p.name) {
            v.err(
                &at("name"),
                format!("provider {:?} is declared twice", p.name),
            );
        }
        let not_for = |v: &mut Validator, present: bool, key: &'static str, kind: &str| {
            if present {
                v.err(&at(key), format!("is not used by kind {kind:?}"));
            }
        };
        let ami_keys = [
            (p.address.is_some(), "address"),
            (p.username.is_some(), "username"),
            (p.channel.is_some(), "channel"),
            (p.context.is_some(), "context"),
            (p.exten.is_some(), "exten"),
            (p.dial.is_some(), "dial"),
            (p.recording.is_some(), "recording"),
            (p.recordings_dir.is_some(), "recordings_dir"),
            (p.variables.is_some(), "variables"),
        ];
        if p.kind != "ami" {
            for (present, key) in ami_keys {
                if !(matches!(p.kind.as_str(), "spokn" | "airtel") && key == "username") {
                    not_for(&mut v, present, key, &p.kind);
                }
            }
        }
        if p.kind != "spokn" {
            not_for(&mut v, p.enterprise.is_some(), "enterprise", &p.kind);
        }
        if p.kind != "airtel" {
            not_for(&mut v, p.customer_id.is_some(), "customer_id", &p.kind);
            not_for(&mut v, p.call_flow_id.is_some(), "call_flow_id", &p.kind);
            if p.kind != "ami" {
                not_for(&mut v, p.caller_id.is_some(), "caller_id", &p.kind);
            }
        }
        let kind = match p.kind.as_str() {
            "airtel" => {
                let (url, username, password) = upstream_api(
                    &mut v,
                    p,
                    i,
                    "airtel",
                    "the API's /v2/execute/workflow address",
                );
                let text =
                    |v: &mut Validator, key: &'static str, value: &Option<String>| match value
                        .as_deref()
                    {
                        Some(s) if !s.is_empty() => s.to_string(),
                        _ => {
                            v.err(&at("kind"), format!("kind \"airtel\" needs {key}"));
                            String::new()
                        }
                    };
                let customer_id = text(&mut v, "customer_id", &p.customer_id);
                let call_flow_id = text(&mut v, "call_flow_id", &p.call_flow_id);
                let caller_id = text(&mut v, "caller_id", &p.caller_id);
                let ten = caller_id.len() == 10 && caller_id.bytes().all(|b| b.is_ascii_digit());
                if !caller_id.is_empty() && !ten {
                    v.err(
                        &at("caller_id"),
                        "must be the account's 10-digit virtual number",
                    );
                }
                if server.public_url.is_empty() {
                    v.err(
                        &at("kind"),
                        "Airtel calls c2cd back at [server] public_url: set it",
                    );
                }
                ProviderKind::Airtel(AirtelUpConfig {
                    url,
                    username,
                    password,
                    customer_id,
                    call_flow_id,
                    caller_id,
                    country_code: raw
                        .airtel
                        .country_code
                        .clone()
                        .unwrap_or_else(|| "91".into()),
                    timeout: v.duration(
                        &at("timeout"),
                        &p.timeout,
                        Duration::from_secs(10),
                        Duration::from_secs(120),
                    ),
                    max_response_bytes: v.range(
                        &at("max_response_bytes"),
                        p.max_response_bytes,
                        65536,
                        1024,
                        16 << 20,
                    ),
                })
            }
            "spokn" => {
                let (url, username, password) = upstream_api(
                    &mut v,
                    p,
                    i,
                    "spokn",
                    "the API's address (https://api.spokn.com/c2c/1.0/call)",
                );
                let enterprise = p.enterprise.unwrap_or(false);
                if enterprise && server.public_url.is_empty() {
                    v.err(
                        &at("enterprise"),
                        "Spokn calls c2cd back at [server] public_url: set it",
                    );
                }
                ProviderKind::Spokn(SpoknUpConfig {
                    url,
                    username,
                    password,
                    enterprise,
                    timeout: v.duration(
                        &at("timeout"),
                        &p.timeout,
                        Duration::from_secs(10),
                        Duration::from_secs(120),
                    ),
                    max_response_bytes: v.range(
                        &at("max_response_bytes"),
                        p.max_response_bytes,
                        65536,
                        1024,
                        16 << 20,
                    ),
                })
            }
            "ami" => {
                for (present, key) in [
                    (p.url.is_some(), "url"),
                    (p.method.is_some(), "method"),
                    (p.auth_fields.is_some(), "auth_fields"),
                    (p.max_response_bytes.is_some(), "max_response_bytes"),
                    (p.ring.is_some(), "ring"),
                    (p.talk.is_some(), "talk"),
                    (p.busy.is_some(), "busy"),
                    (p.no_answer.is_some(), "no_answer"),
                    (p.fail.is_some(), "fail"),
                    (p.silent.is_some(), "silent"),
                ] {
                    not_for(&mut v, present, key, "ami");
                }
                let need =
                    |v: &mut Validator, key: &'static str, value: &Option<String>, what: &str| {
                        match value.as_deref().map(str::trim) {
                            Some(s) if !s.is_empty() => s.to_string(),
                            _ => {
                                v.err(&at("kind"), format!("kind \"ami\" needs {key}, {what}"));
                                String::new()
                            }
                        }
                    };
                let address = need(
                    &mut v,
                    "address",
                    &p.address,
                    "the manager's host:port (127.0.0.1:5038)",
                );
                let username = need(&mut v, "username", &p.username, "the manager.conf user");
                let secret = need(
                    &mut v,
                    "secret",
                    &p.secret,
                    "the manager.conf user's secret",
                );
                let channel = need(
                    &mut v,
                    "channel",
                    &p.channel,
                    "leg A's channel (PJSIP/{number}@trunk)",
                );
                let templated = channel.contains("{number}") && channel.contains('/');
                if !channel.is_empty() && !templated {
                    v.err(
                        &at("channel"),
                        "must be a channel with {number} in it, e.g. PJSIP/{number}@trunk",
                    );
                } else if local_optimised(&channel) {
                    v.err(&at("channel"), LOCAL_N);
                }
                let dial = match &p.dial {
                    Some(d) if d.contains("{number}") && d.contains('/') && !d.contains(',') => {
                        d.trim().to_string()
                    }
                    Some(_) => {
                        v.err(
                            &at("dial"),
                            "must be a dial string with {number} in it and no commas, e.g. PJSIP/{number}@trunk",
                        );
                        String::new()
                    }
                    None => channel.clone(),
                };
                if p.dial.is_some() && local_optimised(&dial) {
                    v.err(&at("dial"), LOCAL_N);
                }
                let bridge = match &p.context {
                    Some(c) if !c.trim().is_empty() => Bridge::Dialplan {
                        context: c.trim().to_string(),
                        exten: p.exten.clone().unwrap_or_else(|| "{number}".into()),
                    },
                    Some(_) => {
                        v.err(&at("context"), "must name a dialplan context");
                        Bridge::Dial
                    }
                    None if p.dial.is_some() => {
                        not_for(&mut v, p.exten.is_some(), "exten", "ami without context");
                        Bridge::Dial
                    }
                    None => {
                        v.err(&at("kind"), "kind \"ami\" needs context (the dialplan dials B) or dial (B's dial string, for Application Dial)");
                        Bridge::Dial
                    }
                };
                let recording = match (p.recording.as_deref(), &bridge) {
                    (Some("dialplan"), Bridge::Dialplan { .. }) => AmiRecording::Dialplan,
                    (None, Bridge::Dialplan { .. }) => AmiRecording::Dialplan,
                    (Some("dialplan"), Bridge::Dial) => {
                        v.err(&at("recording"), "\"dialplan\" needs context: with dial alone no dialplan of the box runs; use \"mixmonitor\"");
                        AmiRecording::Off
                    }
                    (Some("mixmonitor"), _) => AmiRecording::MixMonitor,
                    (Some("none") | None, _) => AmiRecording::Off,
                    (Some(other), _) => {
                        v.err(
                            &at("recording"),
                            format!("{other:?} is not \"dialplan\", \"mixmonitor\" or \"none\""),
                        );
                        AmiRecording::Off
                    }
                };
                let recordings_dir = match p.recordings_dir.as_deref() {
                    None => std::path::PathBuf::from("/var/spool/asterisk/monitor"),
                    Some(d) if d.starts_with('/') => std::path::PathBuf::from(d),
                    Some(_) => {
                        v.err(&at("recordings_dir"), "must be an absolute path");
                        std::path::PathBuf::new()
                    }
                };
                let caller_id = match p.caller_id.as_deref().map(str::trim) {
                    None => "<{number}>".to_string(),
                    Some(c) if !c.is_empty() && !c.contains(['\r', '\n']) => c.to_string(),
                    Some(_) => {
                        v.err(
                            &at("caller_id"),
                            "must be a caller ID such as \"Acme\" <{number}>",
                        );
                        String::new()
                    }
                };
                let mut variables = Vec::new();
                for var in p.variables.iter().flatten() {
                    match var.split_once('=') {
                        Some((name, value))
                            if !name.is_empty()
                                && name
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b"_()".contains(&b))
                                // Asterisk splits a Variable header at commas
                                // and strips quotes and backslashes.
                                && !value.contains([',', '"', '\\', '\r', '\n']) =>
                        {
                            variables.push((name.to_string(), value.to_string()))
                        }
                        _ => v.err(
                            &at("variables"),
                            format!("{var:?} is not NAME=value (the value without commas, quotes or backslashes)"),
                        ),
                    }
                }
                ProviderKind::Ami(AmiConfig {
                    address,
                    username,
                    secret: Secret::new(secret),
                    channel,
                    bridge,
                    dial,
                    recording,
                    caller_id,
                    recordings_dir,
                    variables,
                    timeout: v.duration(
                        &at("timeout"),
                        &p.timeout,
                        Duration::from_secs(5),
                        Duration::from_secs(60),
                    ),
                })
            }
            "sim" => {
                not_for(&mut v, p.url.is_some(), "url", "sim");
                not_for(&mut v, p.method.is_some(), "method", "sim");
                not_for(&mut v, p.timeout.is_some(), "timeout", "sim");
                not_for(&mut v, p.auth_fields.is_some(), "auth_fields", "sim");
                not_for(
                    &mut v,
                    p.max_response_bytes.is_some(),
                    "max_response_bytes",
                    "sim",
                );
                ProviderKind::Sim(SimConfig {
                    secret: p.secret.clone().map(Secret::new),
                    ring: v.duration(
                        &at("ring"),
                        &p.ring,
                        Duration::from_secs(2),
                        Duration::from_secs(300),
                    ),
                    talk: v.duration(
                        &at("talk"),
                        &p.talk,
                        Duration::from_secs(10),
                        Duration::from_secs(86400),
                    ),
                    busy: v.patterns(&at("busy"), &p.busy),
                    no_answer: v.patterns(&at("no_answer"), &p.no_answer),
                    fail: v.patterns(&at("fail"), &p.fail),
                    silent: v.patterns(&at("silent"), &p.silent),
                })
            }
            "xip" => {
                not_for(&mut v, p.ring.is_some(), "ring", "xip");
                not_for(&mut v, p.talk.is_some(), "talk", "xip");
                not_for(&mut v, p.busy.is_some(), "busy", "xip");
                not_for(&mut v, p.no_answer.is_some(), "no_answer", "xip");
                not_for(&mut v, p.fail.is_some(), "fail", "xip");
                not_for(&mut v, p.silent.is_some(), "silent", "xip");
                let url = match p.url.as_deref() {
                    None => {
                        v.err(
                            &at("kind"),
                            "kind \"xip\" needs url, the click-to-call server's address",
                        );
                        hyper::Uri::from_static("http://127.0.0.1/")
                    }
                    Some(u) => match u.parse::<hyper::Uri>() {
                        Ok(uri) if uri.authority().is_some_and(|a| a.as_str().contains('@')) => {
                            // SECURITY: credentials in a URL would be stored with every call.
                            v.err(&at("url"), "must not carry user:password@; the upstream is authenticated by the Auth parameter");
                            uri
                        }
                        Ok(uri) if is_web(&uri) => uri,
                        _ => {
                            v.err(
                                &at("url"),
                                format!("{u:?} is not an http:// or https:// URL"),
                            );
                            hyper::Uri::from_static("http://127.0.0.1/")
                        }
                    },
                };
                let method = match p.method.as_deref() {
                    None | Some("GET") => HttpMethod::Get,
                    Some("POST") => HttpMethod::Post,
                    Some(o) => {
                        v.err(
                            &at("method"),
                            format!("{o:?} is not one of \"GET\", \"POST\""),
                        );
                        HttpMethod::Get
                    }
                };
                let secret = match &p.secret {
                    Some(s) if !s.is_empty() => Secret::new(s.clone()),
                    _ => {
                        v.err(
                            &at("kind"),
                            "kind \"xip\" needs secret, for the Auth it sends upstream",
                        );
                        Secret::new("")
                    }
                };
                let auth_fields = p.auth_fields.clone().unwrap_or_else(|| {
                    vec![
                        "PartnerID".into(),
                        "RequestorPhone".into(),
                        "DestinationPhone".into(),
                    ]
                });
                if auth_fields.is_empty() {
                    v.err(&at("auth_fields"), "needs at least one field");
                }
                for f in &auth_fields {
                    if f == "Auth" || !XIP_PARAMS.contains(&f.as_str()) {
                        v.err(&at("auth_fields"), format!("{f:?} is not one of the parameters sent upstream (RequestorPhone, RequestorCID, DestinationPhone, DestinationCID, PromptSet, TimeLimit, PartnerID, Source)"));
                    }
                }
                ProviderKind::Xip(XipConfig {
                    url,
                    method,
                    timeout: v.duration(
                        &at("timeout"),
                        &p.timeout,
                        Duration::from_secs(10),
                        Duration::from_secs(120),
                    ),
                    secret,
                    auth_fields,
                    max_response_bytes: v.range(
                        &at("max_response_bytes"),
                        p.max_response_bytes,
                        65536,
                        1024,
                        16 << 20,
                    ),
                })
            }
            o => {
                v.err(
                    &at("kind"),
                    format!("{o:?} is not one of \"sim\", \"xip\", \"ami\", \"spokn\", \"airtel\""),
                );
                continue;
            }
        };
        providers.push(ProviderConfig {
            name: p.name.clone(),
            kind,
            max_channels: p.max_channels.unwrap_or(0),
        });
    }

    for (i, p) in providers.iter().enumerate() {
        if let ProviderKind::Xip(x) = &p.kind {
            if x.timeout >= server.drain_timeout {
                v.err(
                    &[K("provider"), I(i), K("timeout")],
                    format!(
                        "must be shorter than server.drain_timeout ({}), so that a stop never cuts a request off",
                        fmt_duration(server.drain_timeout)
                    ),
                );
            }
        }
    }

    // [spokn]
    let spokn = Spokn {
        access_number: raw.spokn.access_number.as_deref().and_then(|n| {
            match crate::core::phone::E164::from_canonical(n) {
                Ok(e) => Some(e),
                Err(e) => {
                    v.err(
                        &[K("spokn"), K("access_number")],
                        format!("must be E.164 with + ({e})"),
                    );
                    None
                }
            }
        }),
    };

    // [airtel]
    let country_code = raw
        .airtel
        .country_code
        .clone()
        .unwrap_or_else(|| "91".into());
    if country_code.is_empty()
        || country_code.len() > 3
        || !country_code.bytes().all(|b| b.is_ascii_digit())
        || country_code.starts_with('0')
    {
        v.err(
            &[K("airtel"), K("country_code")],
            "must be 1 to 3 digits, not starting with 0",
        );
    }
    let airtel = Airtel { country_code };

    // [guard]
    let day = Duration::from_secs(86400);
    let guard = Guard {
        dedupe_window: v.duration(
            &[K("guard"), K("dedupe_window")],
            &raw.guard.dedupe_window,
            Duration::ZERO,
            day,
        ),
        number_limits: (raw.guard.number_limits.iter().flatten().enumerate())
            .filter_map(|(j, w)| v.window(&[K("guard"), K("number_limits"), I(j)], w))
            .collect(),
        check_numbers: raw.guard.check_numbers.unwrap_or(true),
        auth: {
            let d = AuthLimits::default();
            let mut limit = |k: &'static str, raw: &Option<String>, default| match raw.as_deref() {
                None => default,
                Some("off") => None,
                Some(s) => v.window(&[K("guard"), K(k)], s),
            };
            AuthLimits {
                per_source: limit(
                    "auth_failures_per_source",
                    &raw.guard.auth_failures_per_source,
                    d.per_source,
                ),
                per_partner: limit(
                    "auth_failures_per_partner",
                    &raw.guard.auth_failures_per_partner,
                    d.per_partner,
                ),
                lockout: v.duration(
                    &[K("guard"), K("auth_lockout")],
                    &raw.guard.auth_lockout,
                    d.lockout,
                    day,
                ),
            }
        },
    };

    // [[partner]]
    let mut partners: Vec<Partner> = Vec::new();
    for (i, p) in raw.partner.iter().enumerate() {
        let at = |k: &'static str| [K("partner"), I(i), K(k)];
        if p.id.is_empty() || p.id.len() > 64 || !p.id.bytes().all(|b| b.is_ascii_graphic()) {
            v.err(
                &at("id"),
                "must be 1 to 64 printable characters without spaces",
            );
        }
        if partners.iter().any(|q| q.id == p.id) {
            v.err(&at("id"), format!("partner {:?} is declared twice", p.id));
        }
        // A partner with RoundTrip access and no dialects named is a call
        // center: it posts sales and places no calls.
        let default_dialects = match p.roundtrip {
            Some(_) => Vec::new(),
            None => vec!["xip".to_string()],
        };
        let mut dialects = Vec::new();
        for d in p.dialects.clone().unwrap_or(default_dialects) {
            match d.as_str() {
                "xip" => dialects.push(Dialect::Xip),
                "native" => dialects.push(Dialect::Native),
                "spokn" => dialects.push(Dialect::Spokn),
                "airtel" => dialects.push(Dialect::Airtel),
                o => v.err(
                    &at("dialects"),
                    format!(
                        "{o:?} is not a dialect this version speaks (xip, native, spokn, airtel)"
                    ),
                ),
            }
        }
        let secret = p.secret.clone().filter(|s| !s.is_empty()).map(Secret::new);
        if dialects.contains(&Dialect::Xip) && secret.is_none() {
            v.err(
                &at("secret"),
                "partners using the xip dialect need a secret (the MD5 shared secret)",
            );
        }
        if p.username.is_some() || p.roundtrip.is_some() || dialects.iter().any(|d| d.basic_auth())
        {
            match (&p.username, &p.password) {
                (Some(u), _) if u.is_empty() || u.contains(':') => {
                    v.err(&at("username"), "must not be empty or contain ':'")
                }
                (Some(u), _)
                    if raw.partner[..i]
                        .iter()
                        .any(|q| q.username.as_ref() == Some(u)) =>
                {
                    v.err(
                        &at("username"),
                        format!("{u:?} is already another partner's username"),
                    )
                }
                (Some(_), Some(pw)) if pw.len() >= 16 => {}
                (Some(_), Some(_)) => v.err(&at("password"), "must be at least 16 characters"),
                (Some(_), None) => v.err(&at("password"), "a username needs a password"),
                (None, _) => v.err(
                    &at("username"),
                    "partners using the native, spokn or airtel dialect or roundtrip need a username and a password (HTTP Basic)",
                ),
            }
        }
        let ten =
            |s: &str| s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
        if dialects.contains(&Dialect::Airtel) {
            if p.customer_id.as_deref().is_none_or(str::is_empty) {
                v.err(
                    &at("customer_id"),
                    "partners using the airtel dialect need the customerId they send",
                );
            }
            if p.call_flow_ids.as_ref().is_none_or(Vec::is_empty) {
                v.err(
                    &at("call_flow_ids"),
                    "partners using the airtel dialect need at least one callFlowId",
                );
            }
        }
        for c in p.caller_ids.iter().flatten() {
            if !ten(c) {
                v.err(&at("caller_ids"), format!("{c:?} is not a 10-digit number"));
            }
        }
        let mut agent_pools = Vec::new();
        for (j, pool) in p.agent_pool.iter().flatten().enumerate() {
            let at = |k: &'static str| [K("partner"), I(i), K("agent_pool"), I(j), K(k)];
            if pool.id.is_empty() || agent_pools.iter().any(|q: &AgentPool| q.id == pool.id) {
                v.err(&at("id"), "must be non-empty and unique within the partner");
            }
            if pool.agents.is_empty() || pool.agents.len() > crate::core::plan::MAX_PARTICIPANTS {
                v.err(
                    &at("agents"),
                    format!(
                        "must list 1 to {} agents",
                        crate::core::plan::MAX_PARTICIPANTS
                    ),
                );
            }
            for a in &pool.agents {
                if !ten(a) {
                    v.err(&at("agents"), format!("{a:?} is not a 10-digit number"));
                }
            }
            agent_pools.push(AgentPool {
                id: pool.id.clone(),
                agents: pool.agents.clone(),
            });
        }
        let mut rates = Vec::new();
        for (j, r) in p.rate.iter().flatten().enumerate() {
            let at = |k: &'static str| [K("partner"), I(i), K("rate"), I(j), K(k)];
            let digits = r.prefix.strip_prefix('+');
            if !digits.is_some_and(|d| d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit())) {
                v.err(
                    &at("prefix"),
                    "must be + and up to 15 digits (+ alone matches every number)",
                );
            }
            if !(r.cents_per_minute.is_finite() && r.cents_per_minute >= 0.0) {
                v.err(
                    &at("cents_per_minute"),
                    "must be a number of cents, 0 or more",
                );
            }
            rates.push(Rate {
                prefix: r.prefix.clone(),
                // Cents to ten-thousandths of a dollar: 1.5 cents is 150.
                per_minute: crate::core::money::Money(
                    (r.cents_per_minute.clamp(0.0, 1e9) * 100.0).round() as i64,
                ),
            });
        }
        let route = p.provider.as_ref().map(OneOrMany::list).unwrap_or_default();
        if route.is_empty() && !dialects.is_empty() {
            v.err(&at("provider"), "names no provider");
        }
        let targets = p.roundtrip_targets.clone().unwrap_or_default();
        for t in &targets {
            // A NANPA number: its area code starts 2 to 9.
            if !ten(t) || t.starts_with('1') {
                v.err(
                    &at("roundtrip_targets"),
                    format!("{t:?} is not a 10-digit number"),
                );
            }
        }
        let roundtrip = match p.roundtrip.as_deref() {
            None => {
                if p.roundtrip_targets.is_some() {
                    v.err(
                        &at("roundtrip_targets"),
                        "is for roundtrip = \"restricted\" partners",
                    );
                }
                None
            }
            Some("full") => {
                if p.roundtrip_targets.is_some() {
                    v.err(&at("roundtrip_targets"), "is for roundtrip = \"restricted\" partners: a full one may post for any call");
                }
                Some(RoundTripAccess::Full)
            }
            Some("restricted") if targets.is_empty() => {
                v.err(
                    &at("roundtrip_targets"),
                    "a restricted RoundTrip partner needs the numbers it takes calls at",
                );
                None
            }
            Some("restricted") => Some(RoundTripAccess::Restricted(
                targets.iter().map(|t| format!("+1{t}")).collect(),
            )),
            Some(o) => {
                v.err(
                    &at("roundtrip"),
                    format!("{o:?} is not \"full\" or \"restricted\""),
                );
                None
            }
        };
        for (j, name) in route.iter().enumerate() {
            if !raw.provider.iter().any(|q| &q.name == name) {
                v.err(
                    &at("provider"),
                    format!("no [[provider]] is named {name:?}"),
                );
            }
            if route[..j].contains(name) {
                v.err(&at("provider"), format!("{name:?} is in the route twice"));
            }
        }
        let time_limit = match p.time_limit {
            None => 7200,
            Some(t) if (1..=86400).contains(&t) => t,
            Some(t) => {
                v.err(
                    &at("time_limit"),
                    format!("{t} is out of range 1..=86400 seconds"),
                );
                7200
            }
        };
        let max_rate = p
            .max_rate
            .as_ref()
            .and_then(|w| v.window(&at("max_rate"), w));
        let opening = opening(&mut v, p, &at);
        let b_queue = v.duration(
            &at("b_queue"),
            &p.b_queue,
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        if !b_queue.is_zero() && p.max_calls_per_b.unwrap_or(0) == 0 {
            v.err(&at("b_queue"), "needs max_calls_per_b");
        }
        if p.burst == Some(0) {
            v.err(&at("burst"), "must be at least 1");
        }
        let max_waiting = match p.max_waiting {
            None => DEFAULT_MAX_WAITING,
            Some(n) if (1..=1_000_000).contains(&n) => n,
            Some(n) => {
                v.err(
                    &at("max_waiting"),
                    format!("{n} is out of range 1..=1000000"),
                );
                DEFAULT_MAX_WAITING
            }
        };
        let callback_hosts = p.callback_hosts.clone().unwrap_or_default();
        let callback_url = match p.callback_url.as_deref() {
            None => None,
            Some(u) => match check_callback_url(u, &callback_hosts) {
                Ok(uri) => Some(uri),
                Err(e) => {
                    v.err(&at("callback_url"), e);
                    None
                }
            },
        };
        let callback_secrets: Vec<Secret> = p
            .callback_secrets
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(Secret::new)
            .collect();
        if callback_url.is_some() && callback_secrets.iter().all(|s| s.expose().len() < 16) {
            v.err(
                &at("callback_secrets"),
                "a partner with a callback_url needs a callback secret of at least 16 characters",
            );
        }
        partners.push(Partner {
            callback_url,
            callback_hosts,
            callback_secrets,
            id: p.id.clone(),
            name: p.name.clone().unwrap_or_else(|| p.id.clone()),
            secret,
            dialects,
            provider: route.first().cloned().unwrap_or_default(),
            route,
            prompt_set: v.token(&at("prompt_set"), &p.prompt_set, "XIP1"),
            source: v.token(&at("source"), &p.source, "XIP1"),
            time_limit,
            username: p.username.clone(),
            password: p.password.clone().map(Secret::new),
            enabled: p.enabled.unwrap_or(true),
            enterprise: p.enterprise.unwrap_or(false),
            rates,
            customer_id: p.customer_id.clone(),
            call_flow_ids: p.call_flow_ids.clone().unwrap_or_default(),
            caller_ids: p.caller_ids.clone().unwrap_or_default(),
            agent_pools,
            roundtrip,
            balance: p.balance.unwrap_or(false),
            guard: PartnerGuard {
                dedupe_window: v.duration(
                    &at("dedupe_window"),
                    &p.dedupe_window,
                    guard.dedupe_window,
                    day,
                ),
                max_rate,
                burst: p.burst.or(max_rate.map(|w| w.count)).unwrap_or(1),
                max_calls: p.max_calls.unwrap_or(0),
                max_calls_per_b: p.max_calls_per_b.unwrap_or(0),
                b_queue,
                max_waiting,
                opening,
                allowed_caller_ids: caller_id_patterns(&mut v, p, &at),
                mask_a: e164_key(&mut v, &at("mask_a"), p.mask_a.as_deref()),
                mask_b: e164_key(&mut v, &at("mask_b"), p.mask_b.as_deref()),
            },
        });
    }

    let export_dir = raw
        .roundtrip
        .export_dir
        .clone()
        .unwrap_or_else(|| "/var/lib/c2cd/exports".into());
    if !export_dir.starts_with('/') {
        v.err(
            &[K("roundtrip"), K("export_dir")],
            "must be an absolute path",
        );
    }
    let export_timezone = raw
        .roundtrip
        .export_timezone
        .clone()
        .unwrap_or_else(|| "America/Los_Angeles".into());
    if let Err(e) = jiff::tz::TimeZone::get(&export_timezone) {
        v.err(
            &[K("roundtrip"), K("export_timezone")],
            format!("{export_timezone:?} is not a time zone this box knows: {e}"),
        );
    }
    let roundtrip = RoundTrip {
        tolerance: v.duration(
            &[K("roundtrip"), K("tolerance")],
            &raw.roundtrip.tolerance,
            Duration::from_secs(900),
            Duration::from_secs(86400),
        ),
        export_dir: export_dir.into(),
        export_timezone,
    };

    let cloud9 = cloud9(&mut v, &raw.cloud9);

    let warnings = match &source {
        Source::File(path) => file_mode(&mut v, path),
        Source::Embedded => Vec::new(),
    };
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    Ok(Config {
        warnings,
        roundtrip,
        cloud9,
        source,
        server,
        database,
        log,
        admin,
        calls,
        callbacks,
        guard,
        spokn,
        airtel,
        partners,
        providers,
    })
}

/// Keys whose values are secrets, wherever they are: never in an error
/// message, and a reason for the file's mode to be private.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "password",
    "token",
    "carrier_ids",
    "callback_secrets",
];

/// SECURITY: the config file's mode. Writable by every user is refused (anyone
/// on the box could route calls and read the secrets it would be given);
/// readable by every user while it holds a secret is a warning.
fn file_mode(v: &mut Validator, path: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let mode = meta.permissions().mode() & 0o7777;
    let file = path.display();
    if mode & 0o002 != 0 {
        v.errors.push(ConfigError {
            file: file.to_string(),
            line: None,
            key: "file".into(),
            message: format!(
                "writable by every user (mode {mode:04o}): anyone on this machine could change its partners, routes and secrets; chmod o-w {file}"
            ),
        });
        return Vec::new();
    }
    if mode & 0o004 != 0 && holds_secret(v.text) {
        return vec![format!(
            "{file}: file: readable by every user (mode {mode:04o}) and holds secrets; chmod 0640 {file} (owner root, group c2cd, as the package installs it)"
        )];
    }
    Vec::new()
}

/// Whether a config text sets any key of [`SECRET_KEYS`], at any depth.
fn holds_secret(text: &str) -> bool {
    fn any(key: &str, v: &toml::Value) -> bool {
        match v {
            toml::Value::Table(t) => t.iter().any(|(k, v)| any(k, v)),
            toml::Value::Array(a) if !SECRET_KEYS.contains(&key) => a.iter().any(|v| any(key, v)),
            toml::Value::Array(a) => !a.is_empty(),
            toml::Value::String(_) => SECRET_KEYS.contains(&key),
            _ => false,
        }
    }
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.iter().any(|(k, v)| any(k, v)))
}

/// The keys an upstream HTTP API provider (`spokn`, `airtel`) shares: its
/// `url` and its account's HTTP Basic credentials (`username`, `secret`); the
/// simulator's and XIP's own keys are refused.
fn upstream_api(
    v: &mut Validator,
    p: &RawProvider,
    i: usize,
    kind: &str,
    what: &str,
) -> (hyper::Uri, String, Secret) {
    use Seg::{Index as I, Key as K};
    let at = |k: &'static str| [K("provider"), I(i), K(k)];
    for (present, key) in [
        (p.method.is_some(), "method"),
        (p.auth_fields.is_some(), "auth_fields"),
        (p.ring.is_some(), "ring"),
        (p.talk.is_some(), "talk"),
        (p.busy.is_some(), "busy"),
        (p.no_answer.is_some(), "no_answer"),
        (p.fail.is_some(), "fail"),
        (p.silent.is_some(), "silent"),
    ] {
        if present {
            v.err(&at(key), format!("is not used by kind {kind:?}"));
        }
    }
    let fallback = || hyper::Uri::from_static("http://127.0.0.1/");
    let url = match p.url.as_deref().map(|u| (u, u.parse::<hyper::Uri>())) {
        Some((_, Ok(uri)))
            if is_web(&uri) && !uri.authority().is_some_and(|a| a.as_str().contains('@')) =>
        {
            uri
        }
        Some((u, _)) => {
            v.err(
                &at("url"),
                format!("{u:?} is not an http:// or https:// URL without user:password@"),
            );
            fallback()
        }
        None => {
            v.err(&at("kind"), format!("kind {kind:?} needs url, {what}"));
            fallback()
        }
    };
    let credentials = match (&p.username, &p.secret) {
        (Some(u), Some(pw)) if !u.is_empty() && !pw.is_empty() && !u.contains(':') => {
            (u.clone(), Secret::new(pw.clone()))
        }
        _ => {
            v.err(
                &at("kind"),
                format!(
                    "kind {kind:?} needs username and secret, the account's HTTP Basic credentials"
                ),
            );
            (String::new(), Secret::new(""))
        }
    };
    (url, credentials.0, credentials.1)
}

/// An `http://` or `https://` URL with a host: what the outgoing client reaches.
fn is_web(uri: &hyper::Uri) -> bool {
    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
}

/// Turns a serde/TOML error into `FILE:LINE: key: message`.
fn serde_error(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let (line, key) = match e.span() {
        Some(span) => (
            Some(line_of(text, span.start)),
            key_at(text, span.start).unwrap_or_else(|| "toml".to_string()),
        ),
        None => (None, "toml".to_string()),
    };
    let mut message = e.message().trim().to_string();
    // SECURITY: a mistyped secret is quoted by the parser; never print it.
    let last = key.rsplit('.').next().unwrap_or("");
    if SECRET_KEYS.contains(&last) {
        message = redact_quoted(&message);
    }
    ConfigError {
        file: file.to_string(),
        line,
        key,
        message,
    }
}

/// Keys whose values are secrets.
/// Checks a callback URL: `http://` or `https://`, no `user:password@`, and a
/// host among `hosts`. The error says what is wrong, for a config error or a
/// request's problem.
pub fn check_callback_url(url: &str, hosts: &[String]) -> Result<hyper::Uri, String> {
    let uri = url
        .parse::<hyper::Uri>()
        .map_err(|_| format!("{url:?} is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    let Some(host) = uri.host() else {
        return Err(format!("{url:?} has no host"));
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry user:password@".into());
    }
    // SECURITY: callbacks only to hosts the operator listed.
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(format!("host {host:?} is not in callback_hosts"));
    }
    Ok(uri)
}

/// Replaces every `quoted` part of a parser message with `***`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        out.push_str(if i % 2 == 1 { "***" } else { part });
    }
    out
}

/// The dotted key (array indexes left out) whose key or value holds `offset`:
/// `server.listen` for a bad value, `partner.secrte` for an unknown key. Table
/// spans do not cover their bodies, so the whole tree is searched for the
/// deepest match.
fn key_at(text: &str, offset: usize) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn walk(value: &DeValue, offset: usize, path: &mut Vec<String>, best: &mut Vec<String>) {
        match value {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    path.push(k.get_ref().to_string());
                    let hit = k.span().contains(&offset) || v.span().contains(&offset);
                    if hit && path.len() >= best.len() {
                        *best = path.clone();
                    }
                    walk(v.get_ref(), offset, path, best);
                    path.pop();
                }
            }
            DeValue::Array(a) => {
                for v in a.iter() {
                    walk(v.get_ref(), offset, path, best);
                }
            }
            _ => {}
        }
    }
    let (doc, _) = DeTable::parse_recoverable(text);
    let mut best = Vec::new();
    walk(
        &DeValue::Table(doc.into_inner()),
        offset,
        &mut Vec::new(),
        &mut best,
    );
    (!best.is_empty()).then(|| best.join("."))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line a key path points at, found in the parsed document's spans; the
/// deepest part of the path that exists when the rest does not.
fn locate(text: &str, path: &[Seg]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut best = None;
    let mut node: Option<&DeValue> = None;
    let mut table: Option<&DeTable> = Some(doc.get_ref());
    for seg in path {
        let found = match (seg, table, node) {
            (Seg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == *k)
                .map(|(key, val)| (key.span().start, val.get_ref())),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => {
                a.get(*i).map(|item| (item.span().start, item.get_ref()))
            }
            _ => None,
        };
        let Some((offset, value)) = found else { break };
        best = Some(line_of(text, offset));
        node = Some(value);
        table = match value {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best
}

/// Parses "500ms", "10s", "2m", "1h", "1d" (and a bare "0").
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86400).map(Duration::from_secs),
        _ => None,
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Source::File("c.toml".into()))
            .unwrap_err()
            .to_string()
    }

    const OK: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[partner]]
id = "102821"
secret = "s3cret"
provider = "c2c"

[[provider]]
name = "c2c"
kind = "xip"
url = "http://127.0.0.1:9000/c2c"
secret = "up"
"#;

    #[test]
    fn embedded_default_is_valid_and_demo() {
        let c = parse(EMBEDDED, Source::Embedded).unwrap();
        assert!(c.is_embedded());
        assert_eq!(
            c.server.listen,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.database.path, PathBuf::from("c2cd.db"));
        assert!(matches!(c.providers[0].kind, ProviderKind::Sim(_)));
        assert_eq!(c.partners[0].id, "102821");
    }

    #[test]
    fn defaults_apply() {
        let c = parse(OK, Source::File("c.toml".into())).unwrap();
        let p = &c.partners[0];
        assert_eq!(
            (p.prompt_set.as_str(), p.source.as_str(), p.time_limit),
            ("XIP1", "XIP1", 7200)
        );
        assert_eq!(p.dialects, vec![Dialect::Xip]);
        assert_eq!(c.database.path, PathBuf::from("/var/lib/c2cd/c2cd.db"));
        let ProviderKind::Xip(x) = &c.providers[0].kind else {
            panic!()
        };
        assert_eq!(
            x.auth_fields,
            ["PartnerID", "RequestorPhone", "DestinationPhone"]
        );
        assert_eq!(x.method, HttpMethod::Get);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = OK.replace("secret = \"s3cret\"", "secret = \"s3cret\"\nsecrte = \"x\"");
        let e = err(&text);
        assert!(
            e.starts_with("c.toml:8: partner.secrte: unknown field `secrte`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_table_is_an_error() {
        let e = err("[sever]\nlisten = []\n");
        assert!(e.starts_with("c.toml:1: sever: unknown field"), "{e}");
    }

    #[test]
    fn validation_errors_point_at_the_key() {
        let e = err(&OK.replace("provider = \"c2c\"", "provider = \"nope\""));
        assert_eq!(
            e,
            "c.toml:8: partner.provider: no [[provider]] is named \"nope\""
        );
        let e = err(&OK.replace("127.0.0.1:0", "localhost"));
        assert_eq!(
            e,
            "c.toml:3: server.listen: \"localhost\" is not an IP:port address"
        );
        let e = err(&OK.replace("kind = \"xip\"", "kind = \"sip\""));
        assert_eq!(
            e,
            "c.toml:12: provider.kind: \"sip\" is not one of \"sim\", \"xip\", \"ami\", \"spokn\", \"airtel\""
        );
    }

    #[test]
    fn wrong_type_is_reported_with_line() {
        let e = err(&OK.replace("[server]", "[server]\nmax_connections = \"many\""));
        assert!(e.starts_with("c.toml:3: server.max_connections: "), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn xip_partner_needs_secret_and_provider_needs_url() {
        let e = err(&OK.replace("secret = \"s3cret\"\n", ""));
        assert_eq!(e, "c.toml:5: partner.secret: partners using the xip dialect need a secret (the MD5 shared secret)");
        let all = parse_all(
            &OK.replace("url = \"http://127.0.0.1:9000/c2c\"\n", ""),
            Source::File("c.toml".into()),
        )
        .unwrap_err();
        assert_eq!(
            all[0].to_string(),
            "c.toml:12: provider.kind: kind \"xip\" needs url, the click-to-call server's address"
        );
    }

    #[test]
    fn an_ami_provider_bridges_b_one_way_and_records_one_way() {
        let ami = |extra: &str| {
            OK.replace(
                "kind = \"xip\"\nurl = \"http://127.0.0.1:9000/c2c\"\nsecret = \"up\"\n",
                &format!("kind = \"ami\"\naddress = \"127.0.0.1:5038\"\nusername = \"c2cd\"\nsecret = \"s\"\nchannel = \"PJSIP/{{number}}@trunk\"\n{extra}"),
            )
        };
        let c = parse(&ami("context = \"c2cd\"\n"), Source::Embedded).unwrap();
        let ProviderKind::Ami(a) = &c.providers[0].kind else {
            panic!("not ami")
        };
        // B is dialled like A unless dial says otherwise; the dialplan records.
        assert_eq!(
            (a.dial.as_str(), a.recording),
            ("PJSIP/{number}@trunk", AmiRecording::Dialplan)
        );
        let c = parse(&ami("dial = \"Local/{number}@out/n\"\n"), Source::Embedded).unwrap();
        let ProviderKind::Ami(a) = &c.providers[0].kind else {
            panic!("not ami")
        };
        assert_eq!((&a.bridge, a.recording), (&Bridge::Dial, AmiRecording::Off));
        for (extra, want) in [
            ("", "provider.kind: kind \"ami\" needs context"),
            (
                "dial = \"PJSIP/{number}@trunk\"\nrecording = \"dialplan\"\n",
                "provider.recording: \"dialplan\" needs context",
            ),
            (
                "context = \"c2cd\"\nrecording = \"always\"\n",
                "provider.recording: \"always\" is not",
            ),
            (
                "context = \"c2cd\"\ndial = \"PJSIP/{number}@trunk,30\"\n",
                "provider.dial: must be a dial string with {number} in it and no commas",
            ),
            (
                "context = \"c2cd\"\nvariables = [\"SITE=a,b\"]\n",
                "provider.variables: \"SITE=a,b\" is not NAME=value",
            ),
            (
                "context = \"c2cd\"\ndial = \"Local/{number}@out\"\n",
                "provider.dial: a Local channel must end in /n",
            ),
        ] {
            let e = err(&ami(extra));
            assert!(e.contains(want), "{extra}: {e}");
        }
    }

    #[test]
    fn a_mistyped_secret_is_not_quoted_back() {
        let e = err(&OK.replace("secret = \"s3cret\"", "secret = 918273645546372819"));
        assert!(
            e.starts_with("c.toml:7: partner.secret: invalid type"),
            "{e}"
        );
        assert!(!e.contains("918273645546372819"), "{e}");
    }

    #[test]
    fn credentials_in_an_upstream_url_are_refused() {
        let e = err(&OK.replace("http://127.0.0.1:9000/c2c", "http://u:p@127.0.0.1:9000/c2c"));
        assert!(
            e.starts_with("c.toml:13: provider.url: must not carry user:password@"),
            "{e}"
        );
    }

    #[test]
    fn https_is_accepted_and_other_schemes_are_not() {
        let c = parse(
            &OK.replace("http://127.0.0.1:9000/c2c", "https://c2c.example/call.php"),
            Source::File("c.toml".into()),
        )
        .unwrap();
        let ProviderKind::Xip(x) = &c.providers[0].kind else {
            panic!()
        };
        assert_eq!(x.url.scheme_str(), Some("https"));
        let e = err(&OK.replace("http://127.0.0.1:9000/c2c", "ftp://127.0.0.1/c2c"));
        assert_eq!(
            e,
            "c.toml:13: provider.url: \"ftp://127.0.0.1/c2c\" is not an http:// or https:// URL"
        );
        let e = err(&OK.replace("http://127.0.0.1:9000/c2c", "https://u:p@c2c.example/"));
        assert!(
            e.starts_with("c.toml:13: provider.url: must not carry user:password@"),
            "{e}"
        );
    }

    #[test]
    fn an_https_callback_url_still_needs_its_host_listed() {
        let with = |url: &str, hosts: &str| {
            OK.replace(
                "provider = \"c2c\"",
                &format!("provider = \"c2c\"\ncallback_url = \"{url}\"\ncallback_hosts = {hosts}\ncallback_secrets = [\"callback-secret-0123456789\"]"),
            )
        };
        let c = parse(
            &with("https://hooks.example/c2c", "[\"hooks.example\"]"),
            Source::File("c.toml".into()),
        )
        .unwrap();
        let url = c.partners[0].callback_url.as_ref().unwrap();
        assert_eq!(url.to_string(), "https://hooks.example/c2c");
        let e = err(&with("https://other.example/c2c", "[\"hooks.example\"]"));
        assert_eq!(
            e,
            "c.toml:9: partner.callback_url: host \"other.example\" is not in callback_hosts"
        );
        let e = err(&with("https://u:p@hooks.example/", "[\"hooks.example\"]"));
        assert_eq!(
            e,
            "c.toml:9: partner.callback_url: must not carry user:password@"
        );
        let e = err(&with("ws://hooks.example/", "[\"hooks.example\"]"));
        assert_eq!(
            e,
            "c.toml:9: partner.callback_url: \"ws://hooks.example/\" is not an http:// or https:// URL"
        );
    }

    #[test]
    fn a_provider_timeout_must_fit_in_the_drain() {
        let e = err(&OK.replace("secret = \"up\"", "secret = \"up\"\ntimeout = \"30s\""));
        assert!(
            e.contains("provider.timeout: must be shorter than server.drain_timeout (30s)"),
            "{e}"
        );
    }

    /// The keys the schema accepts in `header`, read from the parser's own
    /// "unknown field, expected one of …" message.
    fn schema_keys(header: &str, required: &str) -> Vec<String> {
        let text = format!("{header}\n{required}zz_not_a_key = 1\n");
        let e = parse(&text, Source::File("c.toml".into()))
            .unwrap_err()
            .to_string();
        let list = e
            .split(", expected")
            .nth(1)
            .unwrap_or_else(|| panic!("{e}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_reference_documents_exactly_the_keys_the_schema_accepts() {
        let tables = [
            ("server", "[server]", ""),
            ("database", "[database]", ""),
            ("log", "[log]", ""),
            ("admin", "[admin]", ""),
            ("calls", "[calls]", ""),
            ("callbacks", "[callbacks]", ""),
            ("guard", "[guard]", ""),
            ("spokn", "[spokn]", ""),
            ("airtel", "[airtel]", ""),
            ("roundtrip", "[roundtrip]", ""),
            ("cloud9", "[cloud9]", ""),
            (
                "cloud9.rate",
                "[[cloud9.rate]]",
                "prefix = \"+\"\nper_minute = \"1\"\n",
            ),
            (
                "cloud9.rule",
                "[[cloud9.rule]]",
                "prefix = \"+\"\naction = \"allow\"\n",
            ),
            (
                "cloud9.subscriber",
                "[[cloud9.subscriber]]",
                "msisdn = \"+1\"\n",
            ),
            ("partner", "[[partner]]", "id = \"x\"\nprovider = \"p\"\n"),
            (
                "partner.rate",
                "[[partner]]\nid = \"x\"\nprovider = \"p\"\n[[partner.rate]]",
                "prefix = \"+\"\ncents_per_minute = 1.0\n",
            ),
            (
                "partner.agent_pool",
                "[[partner]]\nid = \"x\"\nprovider = \"p\"\n[[partner.agent_pool]]",
                "id = \"a\"\nagents = []\n",
            ),
            ("provider", "[[provider]]", "name = \"p\"\nkind = \"sim\"\n"),
        ];
        for (table, header, required) in tables {
            let mut schema = schema_keys(header, required);
            let mut documented: Vec<String> = reference::KEYS
                .iter()
                .filter(|k| k.table == table)
                .map(|k| k.name.to_string())
                .collect();
            schema.sort();
            documented.sort();
            assert_eq!(documented, schema, "[{table}]");
        }
        assert_eq!(reference::TABLES.len(), tables.len());
    }

    #[test]
    fn the_readme_names_every_key() {
        let readme = include_str!("../../README.md");
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
        for k in reference::KEYS {
            let name = format!("`{}`", k.name);
            assert!(
                rows.iter().any(|r| r.contains(&name)),
                "README lacks {}.{}",
                k.table,
                k.name
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("150ms"), Some(Duration::from_millis(150)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn the_files_mode_is_checked_for_its_secrets() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            load_file(&path)
        };
        // Private: nothing to say.
        assert_eq!(
            at("private.toml", OK, 0o640).unwrap().warnings,
            Vec::<String>::new()
        );
        // Readable by all, with secrets: taken, with a warning naming the fix.
        let c = at("readable.toml", OK, 0o644).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("readable by every user (mode 0644)")
                && c.warnings[0].contains("chmod 0640"),
            "{:?}",
            c.warnings
        );
        // Readable by all, without a secret: nothing to hide.
        let plain = "[server]\nlisten = [\"127.0.0.1:0\"]\n";
        assert!(at("plain.toml", plain, 0o644).unwrap().warnings.is_empty());
        // Cloud9's carrier IDs are secrets too.
        assert!(holds_secret("[cloud9]\ncarrier_ids = [\"C9\"]\n"));
        assert!(!holds_secret("[cloud9]\ncarrier_ids = []\n"));
        // Writable by all: refused, whatever it holds.
        let e = at("writable.toml", plain, 0o666).unwrap_err();
        assert_eq!(e.key, "file");
        assert!(
            e.message.contains("writable by every user (mode 0666)"),
            "{e}"
        );
    }

    #[test]
    fn secrets_do_not_print_in_debug() {
        let c = parse(OK, Source::File("c.toml".into())).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("\"up\""), "{dbg}");
    }
}
