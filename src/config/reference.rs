//! The config reference: every key, its default and what it does. One source for
//! the `c2cd.toml(5)` man page (`c2cd man c2cd.toml.5`) and checked against the
//! schema by tests, so the documentation cannot drift from the code.

use std::fmt::Write;

/// One key of the config file.
pub struct Key {
    /// The table it belongs to: `server`, `partner`, ….
    pub table: &'static str,
    pub name: &'static str,
    /// The default, as TOML, or "required" / "none".
    pub default: &'static str,
    pub doc: &'static str,
}

/// The tables, in the order the reference presents them, with what they are for.
pub const TABLES: &[(&str, &str, &str)] = &[
    ("server", "[server]", "The HTTP listeners and the limits every request is held to."),
    ("database", "[database]", "The SQLite database and its single writer."),
    ("log", "[log]", "Where log lines go."),
    ("admin", "[admin]", "The operator API under /v1/."),
    (
        "calls",
        "[calls]",
        "How calls are followed to their end. A call that has not ended by the longest it can take (every participant ringing out, then its time limit) plus the grace is reconciled: the provider is asked whether it still follows the call, and if not the call is closed as lost (Q.850 102) with its legs.",
    ),
    (
        "callbacks",
        "[callbacks]",
        "How partners are told what happened to their calls. Each event is queued in the same transaction that records it and delivered at least once, in order per call, retried with exponential backoff and jitter, surviving restarts; every attempt is recorded.",
    ),
    (
        "guard",
        "[guard]",
        "Guard rails every partner shares, checked before any leg is dialled; a partner's own limits are keys of its [[partner]] table. Each refusal is recorded with its rule (calls.guard) and answered with the dialect's own code.",
    ),
    (
        "spokn",
        "[spokn]",
        "The Spokn front door (POST /c2c/1.0/call).",
    ),
    (
        "airtel",
        "[airtel]",
        "The Airtel front door (POST /v2/execute/workflow).",
    ),
    (
        "roundtrip",
        "[roundtrip]",
        "RoundTrip sales data (POST /roundtrip): call centers post sales to the calls c2cd handled.",
    ),
    (
        "cloud9",
        "[cloud9]",
        "Cloud9 call-back authorisation: the carrier asks whether a mobile subscriber's call back may go ahead, and for how long.",
    ),
    ("cloud9.rate", "[[cloud9.rate]]", "What a minute costs, by destination prefix."),
    ("cloud9.rule", "[[cloud9.rule]]", "What happens to a call to a destination, by prefix: allow, deny or reroute."),
    ("cloud9.subscriber", "[[cloud9.subscriber]]", "The MSISDNs that may call, with rules of their own."),
    (
        "partner",
        "[[partner]]",
        "One per vendor, CRM or carrier that may ask for calls. Partners are synced into the database at start and on reload; one removed from the file is disabled there, never deleted.",
    ),
    (
        "partner.rate",
        "[[partner.rate]]",
        "A partner's rate table: what calls to numbers with a prefix cost, reported in Spokn callbacks (rate and cost). The longest matching prefix wins; no match, and local extensions, cost 0.",
    ),
    (
        "partner.agent_pool",
        "[[partner.agent_pool]]",
        "Airtel: a pool of agents an addParticipant component with mergingStrategy ROUND ROBIN names in agentPoolId; each call starts at the next agent.",
    ),
    (
        "provider",
        "[[provider]]",
        "One per click-to-call server. kind = \"sim\" is the built-in simulator; kind = \"xip\" an upstream XIP click-to-call server over HTTP. Keys marked (xip) or (sim) belong to that kind only.",
    ),
];

pub const KEYS: &[Key] = &[
    Key { table: "server", name: "listen", default: "[\"127.0.0.1:8080\"]", doc: "TCP listeners, as \"IP:port\". Keep loopback until a firewall or proxy is in front. A port below 1024 needs CAP_NET_BIND_SERVICE, which the shipped unit grants for binding only." },
    Key { table: "server", name: "max_connections", default: "1024", doc: "Open connections at most; more are answered 503 and closed." },
    Key { table: "server", name: "max_connections_per_source", default: "256", doc: "Open connections from one source address (IPv6: one /64) at most; more are answered 503 and closed, so that one client cannot take every connection. Applies on reload." },
    Key { table: "server", name: "max_body_bytes", default: "65536", doc: "Largest request body in bytes; a larger one is answered 413 (XIP Result 107)." },
    Key { table: "server", name: "max_header_bytes", default: "16384", doc: "Largest request head (request line and headers) in bytes; a larger one is answered 431." },
    Key { table: "server", name: "header_read_timeout", default: "\"10s\"", doc: "Time a client has to send a request head; a slower one has its connection closed." },
    Key { table: "server", name: "body_read_timeout", default: "\"10s\"", doc: "Time a client has to send a request body; a slower one is answered 408 (XIP Result 108)." },
    Key { table: "server", name: "drain_timeout", default: "\"30s\"", doc: "On SIGTERM, time the requests under way get to finish. Must exceed every provider timeout." },
    Key { table: "server", name: "public_url", default: "none", doc: "The URL partners reach c2cd at (https://pbx.example.com:8443), prefixed to links c2cd hands out, such as Airtel's recordingUrl. Without one, links are paths." },
    Key { table: "database", name: "path", default: "\"/var/lib/c2cd/c2cd.db\"", doc: "The SQLite file (WAL mode, synchronous=FULL). The embedded demo default uses \"c2cd.db\" in the working directory." },
    Key { table: "database", name: "queue", default: "10000", doc: "Writes waiting for the writer at most; beyond, requests are answered as overloaded (XIP Result 120, HTTP 503)." },
    Key { table: "database", name: "batch", default: "1024", doc: "Writes committed in one transaction (group commit) at most." },
    Key { table: "log", name: "target", default: "\"stderr\"", doc: "\"stderr\" (the journal under systemd, with priorities) or \"syslog\" (RFC 3164, facility daemon)." },
    Key { table: "log", name: "level", default: "\"info\"", doc: "error, warn, info, debug, trace or off. Applies on reload." },
    Key { table: "log", name: "syslog_socket", default: "/dev/log", doc: "The syslog socket, with target = \"syslog\". When it cannot be reached c2cd logs to stderr and says so." },
    Key { table: "admin", name: "token", default: "none", doc: "Bearer token for /v1/, at least 16 characters. Without one, /v1/ answers 403." },
    Key { table: "calls", name: "grace", default: "\"5m\"", doc: "Time past a call's time limit after which a call not ended is reconciled." },
    Key { table: "calls", name: "reconcile_every", default: "\"30s\"", doc: "How often overdue calls are looked for (at least 100ms)." },
    Key { table: "calls", name: "ring_timeout", default: "\"30s\"", doc: "How long a participant rings before it counts as not answering, for requests that do not say (all but the native API); 1s to 2m." },
    Key { table: "calls", name: "breaker_failures", default: "3", doc: "Failures in a row (unreachable, timeout, 5xx) that open a provider's circuit breaker: the route skips it." },
    Key { table: "calls", name: "breaker_cooldown", default: "\"30s\"", doc: "How long an open breaker keeps calls away; then one call probes the provider, and its outcome closes or reopens the breaker." },
    Key { table: "callbacks", name: "attempts", default: "30", doc: "Attempts per callback at most; then it is given up (state dead)." },
    Key { table: "callbacks", name: "max_age", default: "\"24h\"", doc: "A callback not delivered by this age is given up." },
    Key { table: "callbacks", name: "timeout", default: "\"10s\"", doc: "Time one attempt may take, connection to answer." },
    Key { table: "callbacks", name: "backoff", default: "\"1s\"", doc: "The delay before the first retry; each next delay doubles, with up to 50% jitter." },
    Key { table: "callbacks", name: "max_backoff", default: "\"10m\"", doc: "The longest delay between two attempts." },
    Key { table: "guard", name: "dedupe_window", default: "\"0s\" (off)", doc: "A request for the same partner, A and B as a call within this long (that has not failed) is answered with that call, marked as a replay, and nothing is dialled; at most 24h. A partner's dedupe_window overrides it." },
    Key { table: "guard", name: "check_numbers", default: "true", doc: "Refuse a number, on either side, that libphonenumber's metadata says no number can be (no such country code, a length or a range its country has not): the dialect's invalid-number code. Local extensions are not checked." },
    Key { table: "guard", name: "auth_failures_per_source", default: "\"20/1m\"", doc: "Failed authentications (a bad XIP Auth, a wrong Basic password, an unknown Cloud9 CARRIERID or admin token) from one source, as COUNT/PERIOD, before it is locked out for auth_lockout: every request it makes meanwhile gets the door's \"too many\" answer, right credentials or not. IPv6 sources count by /64. \"off\" turns it off." },
    Key { table: "guard", name: "auth_failures_per_partner", default: "\"100/1m\"", doc: "Failed authentications naming one partner (from any source) before the partner is locked out for auth_lockout. Sources that authenticated as the partner in the last 24 hours are still served, so strangers cannot lock a vendor's own servers out. \"off\" turns it off." },
    Key { table: "guard", name: "auth_lockout", default: "\"5m\"", doc: "How long a lock of auth_failures_per_source or auth_failures_per_partner lasts; at most 24h. A lock is logged at warning, once." },
    Key { table: "guard", name: "number_limits", default: "[] (none)", doc: "Calls to one A number at most, across all partners, each as COUNT/PERIOD: [\"3/15m\", \"5/24h\"]. Refused requests do not count." },
    Key { table: "callbacks", name: "max_response_bytes", default: "16384", doc: "Bytes of a receiver's answer read at most." },
    Key { table: "callbacks", name: "concurrency", default: "256", doc: "Attempts under way at once at most, 1 to 1024." },
    Key { table: "callbacks", name: "per_receiver", default: "16", doc: "Attempts under way to one receiver (scheme, host and port) at once at most, 1 to 1024: a slow receiver holds these and no more, and the others' callbacks go on." },
    Key { table: "spokn", name: "access_number", default: "none", doc: "E.164 number shown to a phone whose other party is a local extension (a Spokn ID, which a phone cannot be shown). Without one such a phone is shown no caller ID." },
    Key { table: "roundtrip", name: "export_dir", default: "\"/var/lib/c2cd/exports\"", doc: "Where c2cd export (the nightly c2cd-export.timer) writes each day's calls with their sales data, as CSV and XML." },
    Key { table: "roundtrip", name: "export_timezone", default: "\"America/Los_Angeles\"", doc: "The IANA time zone whose days the export covers (the seed's cutoff is 02:00 Pacific)." },
    Key { table: "roundtrip", name: "tolerance", default: "\"900s\"", doc: "How far a posted CallStart may be from a call's start for a search to match it (at most 24 h)." },
    Key { table: "cloud9", name: "path", default: "\"/cloud9/moc\"", doc: "Where Cloud9 asks (GET or POST) whether a subscriber's call back may go ahead. Not a path c2cd serves otherwise." },
    Key { table: "cloud9", name: "carrier_ids", default: "[] (off)", doc: "The CARRIERIDs Cloud9 sends, compared in constant time; none turns the endpoint off (404)." },
    Key { table: "cloud9", name: "sources", default: "[] (any)", doc: "Addresses or CIDR blocks requests may come from; others get the error form, 403." },
    Key { table: "cloud9", name: "balance_holder", default: "\"carrier\"", doc: "\"c2cd\": balances live in the database (c2cd balance); \"carrier\": USER_BALANCE is used." },
    Key { table: "cloud9", name: "iot_markup", default: "\"0\"", doc: "Added per minute to IOT_CHARGE when IOT is 1." },
    Key { table: "cloud9", name: "subscribers", default: "\"listed\"", doc: "\"listed\": only [[cloud9.subscriber]] MSISDNs may call; \"any\": every MSISDN." },
    Key { table: "cloud9", name: "default_action", default: "\"allow\"", doc: "For a destination no rule names: \"allow\" or \"deny\"." },
    Key { table: "cloud9", name: "display_allowed", default: "\"Connecting your call\"", doc: "The handset text of an allowed call (sanitised to the seed's characters, 159 at most)." },
    Key { table: "cloud9", name: "display_denied", default: "\"Call not allowed\"", doc: "The handset text of a refused subscriber or destination." },
    Key { table: "cloud9", name: "display_no_credit", default: "\"Not enough credit for this call\"", doc: "The handset text when the balance buys no minute." },
    Key { table: "cloud9", name: "display_offline", default: "\"Your phone cannot be reached for the call back\"", doc: "The handset text for an OFFLINE MSRN." },
    Key { table: "cloud9", name: "display_error", default: "\"The call cannot be placed now\"", doc: "The handset text of the error form." },
    Key { table: "cloud9", name: "rate", default: "[]", doc: "The rates, as [[cloud9.rate]] tables." },
    Key { table: "cloud9", name: "rule", default: "[]", doc: "The destination rules, as [[cloud9.rule]] tables." },
    Key { table: "cloud9", name: "subscriber", default: "[]", doc: "The subscribers, as [[cloud9.subscriber]] tables." },
    Key { table: "cloud9.rate", name: "prefix", default: "required", doc: "+ and up to 15 digits (+ alone matches every number); the longest matching prefix wins." },
    Key { table: "cloud9.rate", name: "per_minute", default: "required", doc: "The price of a minute to it, \"0.10\" (up to four decimals)." },
    Key { table: "cloud9.rule", name: "prefix", default: "required", doc: "+ and up to 15 digits; the longest matching prefix of the destination wins." },
    Key { table: "cloud9.rule", name: "action", default: "required", doc: "\"allow\", \"deny\" or \"reroute\"." },
    Key { table: "cloud9.rule", name: "to", default: "required for reroute", doc: "Where a reroute sends the call, + and digits." },
    Key { table: "cloud9.subscriber", name: "msisdn", default: "required", doc: "The subscriber, + and digits." },
    Key { table: "cloud9.subscriber", name: "enabled", default: "true", doc: "false refuses the subscriber's calls." },
    Key { table: "cloud9.subscriber", name: "rule", default: "[]", doc: "Rules for this subscriber only, tried before [[cloud9.rule]], as [[cloud9.subscriber.rule]] tables (prefix, action, to)." },
    Key { table: "airtel", name: "country_code", default: "\"91\"", doc: "The country code that makes Airtel's 10-digit numbers E.164." },
    Key { table: "partner", name: "id", default: "required", doc: "The partner's id; for XIP, the PartnerID it sends." },
    Key { table: "partner", name: "name", default: "the id", doc: "A name for operators." },
    Key { table: "partner", name: "secret", default: "required for xip", doc: "The XIP MD5 shared secret: Auth = MD5(secret + PartnerID + Requestor + Fulfillment)." },
    Key { table: "partner", name: "dialects", default: "[\"xip\"]", doc: "The front doors the partner may use: xip, native, spokn, airtel." },
    Key { table: "partner", name: "provider", default: "required", doc: "The [[provider]] its calls go to, or a route of them tried in order ([\"pbx\", \"upstream\"]): one that is down, whose breaker is open, or that cannot place the call passes it to the next." },
    Key { table: "partner", name: "prompt_set", default: "\"XIP1\"", doc: "XIP PromptSet sent upstream." },
    Key { table: "partner", name: "source", default: "\"XIP1\"", doc: "XIP Source sent upstream." },
    Key { table: "partner", name: "time_limit", default: "7200", doc: "XIP TimeLimit sent upstream, in seconds (1 to 86400)." },
    Key { table: "partner", name: "username", default: "none", doc: "HTTP Basic user for the native, spokn and airtel dialects (required with them); unique among partners. Spokn callbacks report it as userid." },
    Key { table: "partner", name: "password", default: "none", doc: "HTTP Basic password for the native, spokn and airtel dialects; at least 16 characters." },
    Key { table: "partner", name: "callback_url", default: "none", doc: "Where the events of this partner's calls are POSTed as native JSON (http:// or https://, verified against the system trust store, SSL_CERT_FILE honoured; its host must be in callback_hosts)." },
    Key { table: "partner", name: "callback_hosts", default: "[]", doc: "The only hosts this partner's callbacks may go to. Redirects are not followed." },
    Key { table: "partner", name: "callback_secrets", default: "[]", doc: "HMAC-SHA256 keys (at least 16 characters). Each signs every callback in the C2C-Signature header (t=unix seconds, one v1=hex per key, over \"t.body\"), so a key can be rotated without downtime." },
    Key { table: "partner", name: "enabled", default: "true", doc: "false refuses the partner's requests (XIP Result 101) and keeps its history." },
    Key { table: "partner", name: "enterprise", default: "false", doc: "Spokn: the partner may set apartycid, bpartycid and url (others are answered code 102 when they do)." },
    Key { table: "partner", name: "dedupe_window", default: "[guard] dedupe_window", doc: "A repeat of one of its calls (same A and B) within this long is answered with that call (a replay)." },
    Key { table: "partner", name: "max_rate", default: "none", doc: "Calls it may start, as COUNT/PERIOD (\"10/s\", \"600/m\"): a token bucket, kept in memory." },
    Key { table: "partner", name: "burst", default: "max_rate's COUNT", doc: "Calls over max_rate that may start at once (the bucket's size)." },
    Key { table: "partner", name: "max_calls", default: "0 (no limit)", doc: "Its calls in progress (originating to bridged) at most." },
    Key { table: "partner", name: "max_calls_per_b", default: "0 (no limit)", doc: "Calls in progress to one B number at most, across partners: 1 makes an agent's line busy while it is in a call." },
    Key { table: "partner", name: "b_queue", default: "\"0s\" (refuse)", doc: "How long a call to a busy B (max_calls_per_b reached) waits for a free line: it is taken (state scheduled, answered as deferred), looked at every second, started as soon as B has a line free, and failed when the time is up. At most 1h; needs max_calls_per_b." },
    Key { table: "partner", name: "max_waiting", default: "1000", doc: "Its calls waiting at most: deferred to its next opening (outside_hours = \"defer\") or queued for a busy B (b_queue). A request that would wait past it is refused as partner_busy. 1 to 1000000." },
    Key { table: "partner", name: "hours", default: "none (always open)", doc: "When its calls may be placed, each entry days then times: [\"mon-fri 09:00-12:00,13:00-18:00\", \"sat 10:00-14:00\"]; days mon..sun, ranges and lists; HH:MM-HH:MM, 24:00 allowed, an end before the start runs past midnight; days not named are closed. Outside them a request is refused (outside_hours), with Retry-After until the next opening." },
    Key { table: "partner", name: "holidays", default: "[]", doc: "Days closed, 00:00 to 24:00 local: \"2026-12-26\" once, \"12-25\" every year. Needs hours." },
    Key { table: "partner", name: "timezone", default: "the box's", doc: "The IANA zone its hours are read in. Needs hours." },
    Key { table: "partner", name: "hours_in_called_zone", default: "false", doc: "Read the hours in A's local time where A's country has one time zone (libphonenumber's region, tzdata's zone.tab), else in timezone. Needs hours." },
    Key { table: "partner", name: "outside_hours", default: "\"refuse\"", doc: "What a request outside hours gets: \"refuse\" (outside_hours, with Retry-After) or \"defer\": the call is taken (state scheduled, listed by GET /v1/calls, kept across restarts) and placed at the next opening through its route as configured then; it can be hung up meanwhile. Needs hours." },
    Key { table: "partner", name: "allowed_caller_ids", default: "[] (any)", doc: "Caller IDs its calls may present besides the parties' own numbers (and [spokn] access_number): E.164, a last * for any rest (\"+1800555*\"). A request that would show another is refused (caller_id_a, caller_id_b)." },
    Key { table: "partner", name: "mask_a", default: "none", doc: "What A is always shown (E.164), whatever the request says; the caller ID it replaced is kept in the call's record (a.caller_id_real)." },
    Key { table: "partner", name: "mask_b", default: "none", doc: "What B is always shown (E.164), e.g. the company's main number instead of the agent's line; the replaced one is kept (b.caller_id_real)." },
    Key { table: "partner", name: "balance", default: "false", doc: "Spokn: c2cd holds the partner's credit, as balance partner:<id> (c2cd balance credit partner:<id> 10.00): a call its balance does not buy a minute of, at both legs' rates, is refused with code 108; 105 when the balance cannot be read." },
    Key { table: "partner", name: "rate", default: "[]", doc: "Spokn: the rate table, as [[partner.rate]] tables." },
    Key { table: "partner.rate", name: "prefix", default: "required", doc: "A number prefix: + and up to 15 digits (+ alone matches every number)." },
    Key { table: "partner.rate", name: "cents_per_minute", default: "required", doc: "US cents per started minute." },
    Key { table: "partner", name: "customer_id", default: "required for airtel", doc: "Airtel: the customerId the partner sends; another is INCORRECT_CUSTOMER_ID." },
    Key { table: "partner", name: "call_flow_ids", default: "required for airtel", doc: "Airtel: the callFlowIds the partner may start; another is INCORRECT_CALL_FLOW_ID." },
    Key { table: "partner", name: "caller_ids", default: "[] (any)", doc: "Airtel: the 10-digit virtual numbers the partner may show as callerId; another is INVALID_CALLER_ID." },
    Key { table: "partner", name: "agent_pool", default: "[]", doc: "Airtel: agent pools for ROUND ROBIN, as [[partner.agent_pool]] tables." },
    Key { table: "partner", name: "roundtrip", default: "none", doc: "RoundTrip (POST /roundtrip): \"full\" posts sales data for any call; \"restricted\" (a call center) only for calls whose Target is in roundtrip_targets. Needs username and password. A partner with roundtrip and no dialects places no calls and needs no provider." },
    Key { table: "partner", name: "roundtrip_targets", default: "required for restricted", doc: "RoundTrip: the 10-digit numbers a restricted partner takes calls at." },
    Key { table: "partner.agent_pool", name: "id", default: "required", doc: "What an addParticipant component names in agentPoolId." },
    Key { table: "partner.agent_pool", name: "agents", default: "required", doc: "The agents' 10-digit numbers (1 to 10), in the order round robin takes them." },
    Key { table: "provider", name: "name", default: "required", doc: "What partners refer to." },
    Key { table: "provider", name: "kind", default: "required", doc: "\"sim\", \"xip\", \"ami\", \"spokn\" or \"airtel\"." },
    Key { table: "provider", name: "secret", default: "required for xip and ami", doc: "(xip) The secret the outgoing Auth is computed with. (ami) The manager.conf user's secret. (sim) When set, the simulator checks the Auth it receives against it." },
    Key { table: "provider", name: "url", default: "required for xip", doc: "(xip, spokn, airtel) The click-to-call server (spokn: https://api.spokn.com/c2c/1.0/call; airtel: its /v2/execute/workflow), http:// or https:// (verified against the system trust store, SSL_CERT_FILE honoured), without user:password@." },
    Key { table: "provider", name: "method", default: "\"GET\"", doc: "(xip) \"GET\" (query string) or \"POST\" (form body)." },
    Key { table: "provider", name: "timeout", default: "\"10s\" (ami \"5s\")", doc: "(xip) No complete answer by then: XIP Result 111 (at most 120 s, less than server.drain_timeout). (ami) The time a connect, the login or a manager reply may take." },
    Key { table: "provider", name: "auth_fields", default: "[\"PartnerID\", \"RequestorPhone\", \"DestinationPhone\"]", doc: "(xip) The parameters whose values follow the secret in the outgoing Auth MD5, in order." },
    Key { table: "provider", name: "max_response_bytes", default: "65536", doc: "(xip) A larger answer is XIP Result 112." },
    Key { table: "provider", name: "ring", default: "\"2s\"", doc: "(sim) How long each leg rings." },
    Key { table: "provider", name: "talk", default: "\"10s\"", doc: "(sim) How long the bridged call lasts (capped by TimeLimit)." },
    Key { table: "provider", name: "busy", default: "[]", doc: "(sim) Number patterns (digits, X for any digit, * at the end) whose leg is busy (Q.850 17)." },
    Key { table: "provider", name: "no_answer", default: "[]", doc: "(sim) Number patterns whose leg is not answered (Q.850 19)." },
    Key { table: "provider", name: "fail", default: "[]", doc: "(sim) Number patterns whose leg fails (Q.850 34)." },
    Key { table: "provider", name: "silent", default: "[]", doc: "(sim) Number patterns whose leg rings and then goes silent: no end is reported, and the call is reconciled as lost after its deadline." },
    Key { table: "provider", name: "address", default: "required for ami", doc: "(ami) The Asterisk manager, host:port (127.0.0.1:5038). One connection, logged in with the event mask call,cdr, pinged, reconnected with backoff." },
    Key { table: "provider", name: "username", default: "required for ami, spokn, airtel", doc: "(ami) The manager.conf user (read = call,cdr; write = originate,call). (spokn, airtel) The account's HTTP Basic user; secret is its password." },
    Key { table: "provider", name: "channel", default: "required for ami", doc: "(ami) Leg A's channel, with {number}: PJSIP/{number}@trunk or Local/{number}@from-internal/n (a Local channel needs /n, or Asterisk optimises it away once bridged)." },
    Key { table: "provider", name: "context", default: "none", doc: "(ami) Once A answers it continues here, at extension exten, priority 1: the dialplan dials B (etc/asterisk/extensions_c2cd.conf). Without it, dial is required." },
    Key { table: "provider", name: "exten", default: "\"{number}\"", doc: "(ami) The extension in context, a template of B's first number." },
    Key { table: "provider", name: "dial", default: "channel", doc: "(ami) B's dial string, with {number}: PJSIP/{number}@trunk. Without context, B is dialled by Application Dial (one round: one participant or several in parallel); with context, the dialplan dials B's rounds from C2C_B_DIAL_1… built with it." },
    Key { table: "provider", name: "recording", default: "\"dialplan\" with context, else \"none\"", doc: "(ami) How a recorded call is recorded: \"dialplan\" (c2cd names the file in C2C_RECORD and the dialplan runs MixMonitor), \"mixmonitor\" (c2cd sends Action MixMonitor once A answers; the manager user needs write = system) or \"none\" (recorded calls are refused)." },
    Key { table: "provider", name: "recordings_dir", default: "\"/var/spool/asterisk/monitor\"", doc: "(ami) Where Asterisk writes recordings: c2cd serves a call's recording from here (GET /v1/calls/{id}/recording), so its user needs read access (the asterisk group)." },
    Key { table: "provider", name: "variables", default: "[]", doc: "(ami) Channel variables set on every call, \"NAME=value\"." },
    Key { table: "provider", name: "enterprise", default: "false", doc: "(spokn) The account may send url, apartycid and bpartycid: Spokn then reports each leg to c2cd at [server] public_url (required), which drives the call; without, the call is handed off." },
    Key { table: "provider", name: "customer_id", default: "required for airtel", doc: "(airtel) The account's customerId." },
    Key { table: "provider", name: "call_flow_id", default: "required for airtel", doc: "(airtel) The click-to-call callFlowId Airtel gave the account." },
    Key { table: "provider", name: "max_channels", default: "0 (no limit)", doc: "Calls it places or follows at once at most (the box's or the trunk's channels). A full provider passes a call to the next of the partner's route; when every one is full the request is refused (provider_busy)." },
    Key { table: "provider", name: "caller_id", default: "required for airtel; ami \"<{number}>\"", doc: "(airtel) The account's 10-digit virtual number, shown to both parties. Airtel calls c2cd back at [server] public_url (required). (ami) The CallerID A is shown, a template of the call's caller ID for A: \"Acme\" <{number}>; none is sent when the call has none for A." },
];

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    match t.chars().next() {
        Some('.') | Some('\'') => format!("\\&{t}"),
        _ => t,
    }
}

/// The `c2cd.toml(5)` man page.
pub fn man_page(version: &str) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        ".TH C2CD.TOML 5 \"\" \"c2cd {version}\" \"File Formats\""
    );
    m.push_str(".SH NAME\nc2cd.toml \\- configuration of the c2cd click\\-to\\-call gateway\n");
    m.push_str(".SH SYNOPSIS\n.B /etc/c2cd/c2cd.toml\n");
    m.push_str(".SH DESCRIPTION\nOne TOML file configures c2cd: its listeners and limits, the database, logging, the admin API, the partners that may ask for calls and the click\\-to\\-call servers that place them.\n.PP\nAn unknown key is an error. Errors name the file, the line and the key, as\n.IR FILE : LINE : \" key: problem\" ;\n.B c2cd check\\-config\nprints every one and exits 64. Durations are strings such as \"500ms\", \"10s\", \"2m\" or \"1h\".\n.PP\n.B systemctl reload c2cd\n(SIGHUP) applies a changed file; server.listen, server.max_connections, server.max_header_bytes, server.header_read_timeout, [database], log.target and log.syslog_socket take effect at the next restart. A file with errors is refused and the running configuration stays.\n");
    for (table, header, about) in TABLES {
        let _ = writeln!(m, ".SH {}\n{}", roff(header), roff(about));
        for k in KEYS.iter().filter(|k| k.table == *table) {
            // In a macro argument a literal quote is \(dq, and spaces need quoting.
            let default = roff(k.default).replace('"', "\\(dq");
            let _ = writeln!(
                m,
                ".TP\n.BR {} \" = \" \"{default}\"\n{}",
                k.name,
                roff(k.doc)
            );
        }
    }
    m.push_str(".SH EXAMPLE\n.EX\n[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[admin]\ntoken = \"a\\-long\\-random\\-token\"\n\n[[partner]]\nid = \"102821\"\nsecret = \"a\\-long\\-random\\-shared\\-secret\"\nprovider = \"c2c\"\n\n[[provider]]\nname = \"c2c\"\nkind = \"xip\"\nurl = \"http://192.0.2.10/c2c/call.php\"\nsecret = \"the\\-upstream\\-secret\"\n.EE\n");
    m.push_str(".SH FILES\n.TP\n.I /etc/c2cd/c2cd.toml\nThe configuration, readable by root and the c2cd group only.\n.TP\n.I /var/lib/c2cd/c2cd.db\nThe database.\n");
    m.push_str(".SH SEE ALSO\n.BR c2cd (8)\n");
    m
}
