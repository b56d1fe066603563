//! Airtel's Cloud Communications Platform click-to-call API (seed 001):
//! `POST /v2/execute/workflow` with HTTP Basic auth and a JSON call flow of
//! components keyed `<componentType>_<uniqueId>`: `initiateCall` (the A side,
//! with the callback URLs), `addParticipant` (the B side) and `record`.
//!
//! Decisions where the seed is silent (also in the README):
//! - One `initiateCall` and one `addParticipant` component per request; other
//!   component types are ignored.
//! - callerId: a participant's own, else its component's, else the top level's.
//! - A component's `maxTime` (seconds, 0 = none) limits the bridged call (at most
//!   the partner's `time_limit`); a participant's `maxTime` is how long it rings
//!   (5 to 120 s, the longest of its side's).
//! - `ROUND ROBIN` names a configured pool in `agentPoolId`.
//! - Errors the seed's list has no code for get codes of c2cd's own, in the
//!   same body: `CALL_TYPE_NOT_SUPPORTED`, `MERGING_STRATEGY_NOT_SUPPORTED`,
//!   `MULTIPLE_COMPONENTS_NOT_SUPPORTED`, `INVALID_PARAMETER`,
//!   `CALLBACK_URL_NOT_ALLOWED`, `CALL_FLOW_NOT_SUPPORTED` (400),
//!   `UNSUPPORTED_MEDIA_TYPE` (415), `REQUEST_TOO_LARGE` (413),
//!   `REQUEST_TIMEOUT` (408).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{
    basic_credentials, basic_partner, content_type_is, place, record_refusal, refuse_locked,
    stop_headers, usable, BasicError, CallbackFormat, LegView, Notice, Outcome, Payload, Recorded,
    CALL_ID_HEADER,
};
use crate::app::App;
use crate::config::{self, Dialect, Partner};
use crate::core::call::{q850_text, sip_for, Event, LegState, Side};
use crate::core::phone::{Address, E164};
use crate::core::plan::{self, CallPlan, Participant, SidePlan, Strategy};
use crate::core::{format_ms, CallId};
use crate::guard::{Ask, Rule, Stop};
use crate::http::{read_body, BodyError, Resp};
use crate::notify::reserved_header;
use crate::provider::{About, FollowUp, Originate, ProviderError};
use crate::store::{calls, StoreError};

/// The path of the one resource.
pub const PATH: &str = "/v2/execute/workflow";
/// The event types a callback URL may ask for.
pub const EVENT_TYPES: [&str; 10] = [
    "ALL",
    "CALL",
    "MEDIA",
    "DTMF",
    "RECORD",
    "CDR",
    "API",
    "SUBMITTED",
    "DELIVERED",
    "ERROR",
];
/// Callback URLs per request, and headers per URL, at most.
const MAX_CALLBACK_URLS: usize = 10;
const MAX_HEADERS: usize = 20;
const MAX_HEADER_BYTES: usize = 1024;

/// An error answered in the seed's 400 body: its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: &str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        code,
        message: message.to_string(),
    }
}

/// The seed's codes and messages, word for word, and c2cd's own.
mod codes {
    pub const NULL_REQUEST: (&str, &str) = (
        "CLICK_TO_CALL_REQUEST_NULL_ERROR",
        "click to call request cannot be null/blank",
    );
    pub const FLOW_ID_NULL: (&str, &str) =
        ("CALL_FLOW_ID_NULL_ERROR", "callflowId cannot be null/blank");
    pub const FLOW_ID: (&str, &str) = ("INCORRECT_CALL_FLOW_ID", "incorrect call flow id");
    pub const CUSTOMER_NULL: (&str, &str) =
        ("CUSTOMER_ID_NULL_ERROR", "customerId cannot be null/blank");
    pub const CUSTOMER_DETAILS: (&str, &str) =
        ("CUSTOMER_DETAILS_NOT_AVAILABLE", "cpm details not found");
    pub const CUSTOMER: (&str, &str) = ("INCORRECT_CUSTOMER_ID", "incorrect customerId");
    pub const CALLER_ID_INVALID: (&str, &str) = ("INVALID_CALLER_ID", "invalid called id");
    pub const CALLER_ID_REGEX: (&str, &str) = ("CALLER_ID_REGEX_ERROR", "Incorrect number");
    pub const CALLER_ID_REGEX_TOP: (&str, &str) = ("CALLER_ID_REGEX_ERROR", "caller Id not valid");
    pub const CALLER_ID_NULL: (&str, &str) = ("CALLER_ID_NULL_ERROR", "caller Id required");
    pub const DUPLICATE: (&str, &str) = (
        "DUPLICATE_PARTICIPANT_ADDRESS_FOUND",
        "participant address cannot be duplicate",
    );
    pub const FROM_NULL: (&str, &str) = ("FROM_BODY_NULL_ERROR", "from body cannot be null/blank");
    pub const TO_NULL: (&str, &str) = ("TO_BODY_NULL_ERROR", "to body cannot be null/blank");
    pub const RR_POOL: (&str, &str) = (
        "ROUNDROBIN_AGENT_ID_MISSING",
        "Agent Pool Id cannot be null/empty in case of Round Robin",
    );
    pub const RR_PARTICIPANTS: (&str, &str) = (
        "ROUNDROBIN_PARTICIPANT_DATA_NOT_ALLOWED",
        "Participant List not allowed in case of Round Robin. Please provide Agent pool Id",
    );
    pub const FROM_NUMBER_NULL: (&str, &str) = (
        "FROM_NUMBER_NULL_ERROR",
        "There should be atleast one participant in from",
    );
    pub const FROM_PARTICIPANT_NULL: (&str, &str) = (
        "FROM_PARTICIPANT_NUMBER_NULL_ERROR",
        "from participant number null error",
    );
    pub const FROM_PARTICIPANT_REGEX: (&str, &str) = (
        "FROM_PARTICIPANT_NUMBER_REGEX_ERROR",
        "from participant number not valid",
    );
    pub const FROM_RETRIES: (&str, &str) = (
        "FROM_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE",
        "Max retries can't be greater than 3",
    );
    pub const TO_NUMBER_NULL: (&str, &str) = (
        "TO_NUMBER_NULL_ERROR",
        "There should be atleast one participant in to",
    );
    pub const TO_PARTICIPANT_NULL: (&str, &str) = (
        "TO_PARTICIPANT_NUMBER_NULL_ERROR",
        "to participant number null error",
    );
    pub const TO_PARTICIPANT_REGEX: (&str, &str) = (
        "TO_PARTICIPANT_NUMBER_REGEX_ERROR",
        "to participant number not valid",
    );
    pub const TO_RETRIES: (&str, &str) = (
        "TO_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE",
        "Max retries can't be greater than 3",
    );
    pub const CONFERENCE_TO: (&str, &str) = (
        "CONFERENCE_MERGING_STRATEGY_NOT_ALLOWED_FOT_TO_NUMBER",
        "CONFERENCE merging strategy not allowed in toNumber",
    );
    // c2cd's own, for what the seed's list does not cover.
    pub const CALL_TYPE: &str = "CALL_TYPE_NOT_SUPPORTED";
    pub const STRATEGY: &str = "MERGING_STRATEGY_NOT_SUPPORTED";
    pub const COMPONENTS: &str = "MULTIPLE_COMPONENTS_NOT_SUPPORTED";
    pub const INVALID: &str = "INVALID_PARAMETER";
    pub const CALLBACK: &str = "CALLBACK_URL_NOT_ALLOWED";
    pub const FLOW: &str = "CALL_FLOW_NOT_SUPPORTED";
    // c2cd's guard rails.
    pub const FROM_BLOCKED: &str = "FROM_PARTICIPANT_NUMBER_BLOCKED";
    pub const TO_BLOCKED: &str = "TO_PARTICIPANT_NUMBER_BLOCKED";
    pub const CLOSED: &str = "OUTSIDE_BUSINESS_HOURS";
    pub const NO_CHANNEL: &str = "NO_CHANNEL_AVAILABLE";
    pub const NUMBER_LIMIT: &str = "FROM_NUMBER_CALL_LIMIT_EXCEEDED";
    pub const RATE: &str = "RATE_LIMIT_EXCEEDED";
    pub const AUTH_LOCKOUT: &str = "AUTH_FAILURE_LIMIT_EXCEEDED";
    pub const CONCURRENCY: &str = "CONCURRENT_CALL_LIMIT_EXCEEDED";
    pub const TO_BUSY: &str = "TO_PARTICIPANT_BUSY";
}

fn seed(c: (&'static str, &str)) -> Refusal {
    bad(c.0, c.1)
}

/// The 400 body of the seed.
pub fn error_body(r: &Refusal) -> Value {
    json!({
        "httpStatus": r.status.as_u16(),
        "displayMessage": null,
        "errorMessage": r.message,
        "errorCode": r.code,
        "errorType": null,
        "apiPath": null,
        "errorDetails": null,
        "resourceLayer": "CONTROLLER",
        "errorMeta": null,
    })
}

/// The 500 body of the seed, word for word.
pub fn internal_body() -> Value {
    json!({
        "httpStatus": 500,
        "displayMessage": null,
        "errorMessage": "2",
        "errorCode": "AIRTEL_ONLINE_UNCAUGHT_ERROR",
        "errorType": null,
        "apiPath": null,
        "errorDetails": null,
        "resourceLayer": "UNKNOWN",
        "errorMeta": null,
    })
}

/// What the partner is told, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Unauthorized,
    Forbidden,
    Refused(Refusal),
    Internal(String),
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::Unauthorized => StatusCode::UNAUTHORIZED,
            Failure::Forbidden => StatusCode::FORBIDDEN,
            Failure::Refused(r) => r.status,
            Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Failure::Unauthorized => "UNAUTHORIZED",
            Failure::Forbidden => "FORBIDDEN",
            Failure::Refused(r) => r.code,
            Failure::Internal(_) => "AIRTEL_ONLINE_UNCAUGHT_ERROR",
        }
    }

    fn body(&self) -> Value {
        match self {
            Failure::Unauthorized => json!({ "message": "Unauthorized" }),
            Failure::Forbidden => json!({ "message": "Forbidden" }),
            Failure::Refused(r) => error_body(r),
            Failure::Internal(_) => internal_body(),
        }
    }

    fn detail(&self) -> String {
        match self {
            Failure::Unauthorized => "unauthorized".into(),
            Failure::Forbidden => "the partner is disabled or may not use airtel".into(),
            Failure::Refused(r) => format!("{}: {}", r.code, r.message),
            Failure::Internal(d) => d.clone(),
        }
    }
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

fn respond(id: Option<CallId>, status: StatusCode, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // As the seed's sample answer has them.
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-credentials",
        HeaderValue::from_static("true"),
    );
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
        h.insert(CALL_ID_HEADER, v);
    }
    r
}

fn failure_response(id: CallId, f: &Failure) -> Resp {
    let mut r = respond(Some(id), f.status(), json_bytes(&f.body()));
    if *f == Failure::Unauthorized {
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"airtel\", charset=\"UTF-8\""),
        );
    }
    r
}

/// Anything under `/v2/` that is not `POST /v2/execute/workflow`.
pub fn not_found(method_only: bool) -> Resp {
    let (status, message) = match method_only {
        true => (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        false => (StatusCode::NOT_FOUND, "Not Found"),
    };
    let mut r = respond(None, status, json_bytes(&json!({ "message": message })));
    if method_only {
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}

/// One callback URL of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallbackUrl {
    event_type: String,
    url: String,
    method: String,
    headers: Vec<(String, String)>,
}

/// A validated request.
struct Validated {
    plan: CallPlan,
    callbacks: Vec<CallbackUrl>,
    names: Vec<(String, String)>,
    call_flow_id: String,
    customer_id: String,
}

/// A string field: `None` when absent or null; an error when not a string.
fn text<'a>(o: &'a Map<String, Value>, key: &str, at: &str) -> Result<Option<&'a str>, Refusal> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(codes::INVALID, &format!("{at}{key} must be a string"))),
    }
}

/// A non-negative integer field.
fn uint(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u64>, Refusal> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            bad(
                codes::INVALID,
                &format!("{at}{key} must be a whole number, 0 or more"),
            )
        }),
    }
}

fn boolean(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<bool>, Refusal> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(
            codes::INVALID,
            &format!("{at}{key} must be true or false"),
        )),
    }
}

/// A 10-digit number.
fn ten_digits(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
}

/// A 10-digit number as E.164.
fn e164(cfg: &config::Config, ten: &str) -> Option<E164> {
    E164::from_digits(&format!("{}{ten}", cfg.airtel.country_code)).ok()
}

/// The 10 digits of a stored E.164 number, as Airtel writes numbers.
pub fn ten(number: &str) -> &str {
    let d = number.trim_start_matches('+');
    if d.len() > 10 {
        &d[d.len() - 10..]
    } else {
        d
    }
}

/// Which way a component faces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    From,
    To,
}

/// Checks a callerId: 10 digits, and one of the partner's when it lists them.
fn caller_id(partner: &Partner, v: &str, top: bool) -> Result<String, Refusal> {
    if !ten_digits(v) {
        return Err(seed(if top {
            codes::CALLER_ID_REGEX_TOP
        } else {
            codes::CALLER_ID_REGEX
        }));
    }
    if !partner.caller_ids.is_empty() && !partner.caller_ids.iter().any(|c| c == v) {
        return Err(seed(codes::CALLER_ID_INVALID));
    }
    Ok(v.to_string())
}

/// A component's side: participants (or a round-robin pool), strategy, caller
/// IDs, ring timeout and the component's maxTime.
/// What validating the two sides shares: who asks, and what was seen so far.
struct Sides<'a> {
    partner: &'a Partner,
    cfg: &'a config::Config,
    /// The top-level callerId.
    top_cid: Option<String>,
    /// participantName by number, for the CDR.
    names: Vec<(String, String)>,
    /// Addresses already given: each may appear once.
    seen: Vec<String>,
}

impl Sides<'_> {
    fn side(
        &mut self,
        dir: Dir,
        c: &Map<String, Value>,
        key: &str,
    ) -> Result<(SidePlan, Option<u64>), Refusal> {
        let (partner, cfg) = (self.partner, self.cfg);
        let top_cid = self.top_cid.clone();
        let (names, seen) = (&mut self.names, &mut self.seen);
        let at = format!("{key}.");
        let (null, pnull, regex, retries_code) = match dir {
            Dir::From => (
                codes::FROM_NUMBER_NULL,
                codes::FROM_PARTICIPANT_NULL,
                codes::FROM_PARTICIPANT_REGEX,
                codes::FROM_RETRIES,
            ),
            Dir::To => (
                codes::TO_NUMBER_NULL,
                codes::TO_PARTICIPANT_NULL,
                codes::TO_PARTICIPANT_REGEX,
                codes::TO_RETRIES,
            ),
        };
        let comp_cid = text(c, "callerId", &at)?;
        let comp_cid = match comp_cid.filter(|s| !s.is_empty()) {
            Some(v) => Some(caller_id(partner, v, false)?),
            None => None,
        };
        let strategy = match text(c, "mergingStrategy", &at)?.map(|s| s.trim().to_ascii_uppercase()) {
        None => Strategy::Sequential,
        Some(s) => match s.as_str() {
            "" | "SEQUENTIAL" => Strategy::Sequential,
            "PARALLEL" => Strategy::Parallel,
            "ROUND ROBIN" | "ROUND_ROBIN" | "ROUNDROBIN" => Strategy::RoundRobin,
            "CONFERENCE" if dir == Dir::To => return Err(seed(codes::CONFERENCE_TO)),
            other => {
                return Err(bad(
                    codes::STRATEGY,
                    &format!("{at}mergingStrategy {other:?} is not supported (SEQUENTIAL, PARALLEL, ROUND ROBIN)"),
                ))
            }
        },
    };
        let list = match c.get("participants").or_else(|| c.get("Participants")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(bad(
                    codes::INVALID,
                    &format!("{at}participants must be an array"),
                ))
            }
        };
        let mut raw: Vec<Map<String, Value>> = Vec::new();
        if strategy == Strategy::RoundRobin {
            if !list.is_empty() {
                return Err(seed(codes::RR_PARTICIPANTS));
            }
            let pool_id = text(c, "agentPoolId", &at)?.filter(|s| !s.is_empty());
            let Some(pool) = pool_id.and_then(|id| partner.agent_pools.iter().find(|p| p.id == id))
            else {
                return Err(seed(codes::RR_POOL));
            };
            for a in &pool.agents {
                let mut m = Map::new();
                m.insert("participantAddress".into(), Value::String(a.clone()));
                raw.push(m);
            }
        } else {
            if list.is_empty() {
                return Err(seed(null));
            }
            if list.len() > plan::MAX_PARTICIPANTS {
                return Err(bad(
                    codes::INVALID,
                    &format!("{at}participants: at most {}", plan::MAX_PARTICIPANTS),
                ));
            }
            for p in list {
                match p {
                    Value::Object(m) => raw.push(m),
                    _ => {
                        return Err(bad(
                            codes::INVALID,
                            &format!("{at}participants must hold objects"),
                        ))
                    }
                }
            }
        }
        let mut participants = Vec::new();
        let mut ring: Option<Duration> = None;
        for (i, p) in raw.iter().enumerate() {
            let at = format!("{at}participants[{i}].");
            let address = text(p, "participantAddress", &at)?.unwrap_or("").trim();
            if address.is_empty() {
                return Err(seed(pnull));
            }
            if !ten_digits(address) {
                return Err(seed(regex));
            }
            if seen.iter().any(|s| s == address) {
                return Err(seed(codes::DUPLICATE));
            }
            seen.push(address.to_string());
            let retries = uint(p, "maxRetries", &at)?.unwrap_or(0);
            if retries > u64::from(plan::MAX_RETRIES) {
                return Err(seed(retries_code));
            }
            let cid = match text(p, "callerId", &at)?.filter(|s| !s.is_empty()) {
                Some(v) => Some(caller_id(partner, v, false)?),
                None => None,
            };
            let cid = cid.or_else(|| comp_cid.clone()).or(top_cid.clone());
            let Some(cid) = cid else {
                return Err(seed(codes::CALLER_ID_NULL));
            };
            if let Some(t) = uint(p, "maxTime", &at)?.filter(|t| *t > 0) {
                let t = Duration::from_secs(t)
                    .clamp(plan::RING_TIMEOUT_RANGE.0, plan::RING_TIMEOUT_RANGE.1);
                ring = Some(ring.map_or(t, |r| r.max(t)));
            }
            boolean(p, "enableEarlyMedia", &at)?;
            let number = e164(cfg, address).ok_or_else(|| seed(regex))?;
            if let Some(name) = text(p, "participantName", &at)? {
                names.push((
                    number.as_str().to_string(),
                    name.chars().take(128).collect(),
                ));
            }
            let cid = e164(cfg, &cid).map(|n| n.as_str().to_string());
            participants.push(Participant {
                number: Address::Phone(number),
                caller_id: cid,
                retries: u8::try_from(retries).unwrap_or(plan::MAX_RETRIES),
            });
        }
        let max_time = uint(c, "maxTime", &at)?.filter(|t| *t > 0);
        Ok((
            SidePlan {
                participants,
                strategy,
                caller_id: None,
                ring_timeout: ring.unwrap_or(cfg.calls.ring_timeout),
                retry_delay: Duration::ZERO,
                start: 0,
            },
            max_time,
        ))
    }
}

fn callback_urls(
    c: &Map<String, Value>,
    key: &str,
    partner: &Partner,
) -> Result<Vec<CallbackUrl>, Refusal> {
    let at = format!("{key}.callBackURLs");
    let list = match c.get("callBackURLs") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad(codes::INVALID, &format!("{at} must be an array"))),
    };
    if list.len() > MAX_CALLBACK_URLS {
        return Err(bad(
            codes::INVALID,
            &format!("{at}: at most {MAX_CALLBACK_URLS}"),
        ));
    }
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let at = format!("{at}[{i}].");
        let Value::Object(o) = v else {
            return Err(bad(codes::INVALID, &format!("{at} must be an object")));
        };
        // The seed's table writes Method and Headers, its sample method and headers.
        let get = |k: &str, alt: &str| {
            text(o, k, &at).and_then(|v| match v {
                Some(v) => Ok(Some(v)),
                None => text(o, alt, &at),
            })
        };
        let event_type = get("eventType", "EventType")?
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        if !EVENT_TYPES.contains(&event_type.as_str()) {
            return Err(bad(
                codes::INVALID,
                &format!("{at}eventType must be one of {}", EVENT_TYPES.join(", ")),
            ));
        }
        let url = get("notifyURL", "NotifyURL")?.unwrap_or("").trim();
        let url = config::check_callback_url(url, &partner.callback_hosts)
            .map_err(|e| bad(codes::CALLBACK, &format!("{at}notifyURL: {e}")))?;
        let method = get("method", "Method")?
            .unwrap_or("POST")
            .trim()
            .to_ascii_uppercase();
        if method != "POST" && method != "PUT" {
            return Err(bad(
                codes::INVALID,
                &format!("{at}method must be POST or PUT"),
            ));
        }
        let mut headers = Vec::new();
        match o.get("headers").or_else(|| o.get("Headers")) {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                if h.len() > MAX_HEADERS {
                    return Err(bad(
                        codes::INVALID,
                        &format!("{at}headers: at most {MAX_HEADERS}"),
                    ));
                }
                for (name, value) in h {
                    let Some(value) = value.as_str() else {
                        return Err(bad(
                            codes::INVALID,
                            &format!("{at}headers.{name} must be a string"),
                        ));
                    };
                    let ok = hyper::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                        && HeaderValue::from_str(value).is_ok()
                        && name.len() + value.len() <= MAX_HEADER_BYTES;
                    if !ok || reserved_header(name) {
                        return Err(bad(
                            codes::INVALID,
                            &format!("{at}headers.{name} may not be sent"),
                        ));
                    }
                    headers.push((name.clone(), value.to_string()));
                }
            }
            Some(_) => {
                return Err(bad(
                    codes::INVALID,
                    &format!("{at}headers must be an object"),
                ))
            }
        }
        out.push(CallbackUrl {
            event_type,
            url: url.to_string(),
            method,
            headers,
        });
    }
    Ok(out)
}

/// What `handle` makes of a body before anything is recorded: for the fuzz
/// target (`crate::fuzz`).
pub fn fuzz_body(body: &[u8], partner: &Partner, cfg: &config::Config) {
    let _ = validate(body, partner, cfg);
}

fn validate(body: &[u8], partner: &Partner, cfg: &config::Config) -> Result<Validated, Refusal> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) if !o.is_empty() => Value::Object(o),
        _ => return Err(seed(codes::NULL_REQUEST)),
    };
    let o = v.as_object().ok_or_else(|| seed(codes::NULL_REQUEST))?;
    let flow = text(o, "callFlowId", "")?.unwrap_or("").trim();
    if flow.is_empty() {
        return Err(seed(codes::FLOW_ID_NULL));
    }
    let customer = text(o, "customerId", "")?.unwrap_or("").trim();
    if customer.is_empty() {
        return Err(seed(codes::CUSTOMER_NULL));
    }
    let Some(expected) = partner.customer_id.as_deref() else {
        return Err(seed(codes::CUSTOMER_DETAILS));
    };
    if customer != expected {
        return Err(seed(codes::CUSTOMER));
    }
    if !partner.call_flow_ids.iter().any(|f| f == flow) {
        return Err(seed(codes::FLOW_ID));
    }
    let call_type = text(o, "callType", "")?
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    if call_type != "OUTBOUND" {
        return Err(bad(
            codes::CALL_TYPE,
            "callType must be OUTBOUND: click to call places outbound calls",
        ));
    }
    let top_cid = match text(o, "callerId", "")?.filter(|s| !s.is_empty()) {
        Some(c) => Some(caller_id(partner, c, true)?),
        None => None,
    };
    let config = match o.get("callFlowConfiguration") {
        Some(Value::Object(c)) => c,
        None | Some(Value::Null) => return Err(seed(codes::FROM_NULL)),
        Some(_) => {
            return Err(bad(
                codes::INVALID,
                "callFlowConfiguration must be an object",
            ))
        }
    };
    let (mut from, mut to, mut record) = (None, None, None);
    for (key, c) in config {
        let kind = key.split_once('_').map_or(key.as_str(), |(k, _)| k);
        let slot = match kind {
            "initiateCall" => &mut from,
            "addParticipant" => &mut to,
            "record" => &mut record,
            _ => {
                log::debug!("airtel: component {key:?} ignored");
                continue;
            }
        };
        let Value::Object(c) = c else {
            return Err(bad(codes::INVALID, &format!("{key} must be an object")));
        };
        if slot.is_some() {
            return Err(bad(
                codes::COMPONENTS,
                &format!("one {kind} component per request"),
            ));
        }
        *slot = Some((key.clone(), c));
    }
    let Some((from_key, from)) = from else {
        return Err(seed(codes::FROM_NULL));
    };
    let Some((to_key, to)) = to else {
        return Err(seed(codes::TO_NULL));
    };
    let mut sides = Sides {
        partner,
        cfg,
        top_cid,
        names: Vec::new(),
        seen: Vec::new(),
    };
    let (a, a_time) = sides.side(Dir::From, from, &from_key)?;
    let (b, b_time) = sides.side(Dir::To, to, &to_key)?;
    let callbacks = callback_urls(from, &from_key, partner)?;
    let record = match record {
        None => false,
        Some((key, r)) => boolean(r, "enabled", &format!("{key}."))?.unwrap_or(true),
    };
    let cap = Duration::from_secs(u64::from(partner.time_limit));
    let time_limit = [a_time, b_time]
        .into_iter()
        .flatten()
        .map(Duration::from_secs)
        .fold(cap, Duration::min);
    Ok(Validated {
        plan: CallPlan {
            a,
            b,
            time_limit,
            record,
        },
        callbacks,
        names: sides.names,
        call_flow_id: flow.to_string(),
        customer_id: customer.to_string(),
    })
}

/// Records a request c2cd refuses itself, then answers it.
async fn reject(app: &App, rec: calls::NewCall, f: Failure, note: Option<String>) -> Resp {
    let id = rec.id;
    let mut refusal = Answer::failed(Event::Rejected, f.clone());
    if let Some(n) = note {
        refusal.detail = Some(format!("{} ({n})", f.detail()));
    }
    match record_refusal(app, rec, refusal).await {
        Ok(()) => failure_response(id, &f),
        Err(se) => store_failure(id, &se),
    }
}

fn store_failure(id: CallId, e: &StoreError) -> Resp {
    log::error!("call {id}: airtel request not recorded: {e}");
    failure_response(id, &Failure::Internal(e.to_string()))
}

/// `POST /v2/execute/workflow`.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Resp {
    let app = &*app;
    if req.method() != Method::POST {
        return not_found(true);
    }
    let rt = app.runtime();
    let limits = &rt.config.server;
    let mut rec = calls::NewCall::received(
        "airtel",
        remote,
        req.method().as_str(),
        req.uri().query().unwrap_or(""),
    );
    let is_json = content_type_is(&req, "application/json");
    let auth = req.headers().get(AUTHORIZATION).cloned();
    let limit_refusal = |status, code: &'static str, message: &str| {
        Failure::Refused(Refusal {
            status,
            code,
            message: message.to_string(),
        })
    };
    match read_body(req, limits.max_body_bytes, limits.body_read_timeout).await {
        Ok(b) => rec.received_body = b.to_vec(),
        Err(BodyError::TooLarge) => {
            let f = limit_refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_TOO_LARGE",
                "request body too large",
            );
            return reject(app, rec, f, None).await;
        }
        Err(BodyError::Timeout) => {
            let f = limit_refusal(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "request body not received in time",
            );
            return reject(app, rec, f, None).await;
        }
        Err(BodyError::Io(e)) => {
            return reject(
                app,
                rec,
                Failure::Refused(seed(codes::NULL_REQUEST)),
                Some(format!("body: {e}")),
            )
            .await
        }
    }
    let partner = match basic_partner(app, &rt.config, remote.ip(), auth.as_ref(), Dialect::Airtel)
    {
        Ok(p) => p,
        Err(e) => {
            // Who tried is kept for the operator; the password never is.
            rec.auth_ok = Some(false);
            let user = basic_credentials(auth.as_ref()).map(|(u, _)| format!("username {u:?}"));
            let f = match e {
                BasicError::Unauthorized => Failure::Unauthorized,
                BasicError::Forbidden => Failure::Forbidden,
                BasicError::Locked(l) => {
                    let id = rec.id;
                    let refusal = Answer::stopped(id, &Stop::locked(&l));
                    let f = refusal.failure.clone().unwrap_or(Failure::Unauthorized);
                    let answer = || failure_response(id, &f);
                    return refuse_locked(app, rec, refusal, &l, answer, |se| {
                        store_failure(id, se)
                    })
                    .await;
                }
            };
            return reject(
                app,
                rec,
                f,
                Some(user.unwrap_or_else(|| "no username".into())),
            )
            .await;
        }
    };
    rec.partner_id = Some(partner.id.clone());
    rec.auth_ok = Some(true);
    if !is_json {
        let f = limit_refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        );
        return reject(app, rec, f, None).await;
    }
    let mut v = match validate(&rec.received_body, partner, &rt.config) {
        Ok(v) => v,
        Err(r) => return reject(app, rec, Failure::Refused(r), None).await,
    };
    app.rotation.assign(&mut v.plan);
    let plan = Arc::new(v.plan);
    let Some(o) = Originate::for_plan(rec.id, plan.clone(), partner) else {
        let e = Failure::Internal("a side without participants".into());
        return reject(app, rec, e, None).await;
    };
    rec.set_plan(&plan);
    // Without callBackURLs, the partner's callback_url gets every event.
    let callbacks = match (v.callbacks.is_empty(), &partner.callback_url) {
        (true, Some(u)) => vec![CallbackUrl {
            event_type: "ALL".into(),
            url: u.to_string(),
            method: "POST".into(),
            headers: Vec::new(),
        }],
        _ => v.callbacks,
    };
    rec.callback_url = callbacks.first().map(|c| c.url.clone());
    rec.dialect_data = Some(json!({
        "links": rt.config.server.public_url,
        "callFlowId": v.call_flow_id,
        "customerId": v.customer_id,
        "names": v.names.iter().map(|(n, name)| json!([n, name])).collect::<Vec<_>>(),
        "callbacks": callbacks.iter().map(|c| json!({
            "eventType": c.event_type, "url": c.url, "method": c.method, "headers": c.headers,
        })).collect::<Vec<_>>(),
    }));
    let route = match usable(&rt.providers.route(&partner.route), &plan) {
        Ok(r) => r,
        Err(why) => {
            return reject(app, rec, Failure::Refused(bad(codes::FLOW, &why)), None).await;
        }
    };
    let id = rec.id;
    let ask = Ask::new(&rt.config, partner, rec.at);
    let placed = place(
        app,
        rec,
        &route,
        &o,
        ask,
        move |s: &Stop| Answer::stopped(id, s),
        |r| answer_of(id, r),
    );
    let (answer, stop) = match placed.await {
        Ok(placed) => placed,
        Err(e) => return store_failure(id, &e),
    };
    match &answer.failure {
        None => log::info!(
            "call {id}: airtel partner {:?}: {}",
            partner.id,
            answer.event.kind()
        ),
        Some(f) => log::warn!("call {id}: airtel partner {:?}: {}", partner.id, f.detail()),
    }
    let shown = stop.as_ref().and_then(|s| s.replay_of).unwrap_or(id);
    let mut r = match &answer.failure {
        None => respond(Some(shown), StatusCode::OK, answer.body),
        Some(f) => failure_response(id, f),
    };
    stop_headers(&mut r, stop.as_ref());
    r
}

/// What the partner is answered, and what the call records of it.
#[derive(Clone)]
struct Answer {
    event: Event,
    failure: Option<Failure>,
    detail: Option<String>,
    body: Bytes,
}

impl Answer {
    /// The answer to a request the guard rails stopped: a replay is a success
    /// with the earlier call's correlationId; a limit is refused with c2cd's
    /// own error code in the seed's error body.
    fn stopped(id: CallId, s: &Stop) -> Answer {
        if s.deferred_to.is_some() {
            let body = json!({ "status": "success", "correlationId": id.to_string() });
            return Answer {
                event: Event::Deferred,
                failure: None,
                detail: Some(s.detail.clone()),
                body: json_bytes(&body),
            };
        }
        let told = |status, code: &'static str, message: &str| {
            Failure::Refused(Refusal {
                status,
                code,
                message: message.to_string(),
            })
        };
        let limit = |status, code| told(status, code, &s.detail);
        let f = match (s.rule, s.replay_of) {
            (Rule::Duplicate, Some(of)) => {
                let body = json!({ "status": "success", "correlationId": of.to_string() });
                return Answer {
                    event: Event::Rejected,
                    failure: None,
                    detail: Some(s.detail.clone()),
                    body: json_bytes(&body),
                };
            }
            (Rule::Disabled, _) => Failure::Forbidden,
            (Rule::Invalid(Side::A), _) => {
                limit(StatusCode::BAD_REQUEST, codes::FROM_PARTICIPANT_REGEX.0)
            }
            (Rule::Invalid(Side::B), _) => {
                limit(StatusCode::BAD_REQUEST, codes::TO_PARTICIPANT_REGEX.0)
            }
            // The entry, its reason and its list stay in the record.
            (Rule::Blocked(Side::A), _) => told(
                StatusCode::BAD_REQUEST,
                codes::FROM_BLOCKED,
                "from participant number is on the do-not-call list",
            ),
            (Rule::Blocked(Side::B), _) => told(
                StatusCode::BAD_REQUEST,
                codes::TO_BLOCKED,
                "to participant number is on the do-not-call list",
            ),
            (Rule::Closed, _) => limit(StatusCode::FORBIDDEN, codes::CLOSED),
            (Rule::CallerId(_), _) => Failure::Refused(seed(codes::CALLER_ID_INVALID)),
            (Rule::ProviderBusy, _) => told(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::NO_CHANNEL,
                "no channel is free; retry later",
            ),
            (Rule::NumberLimit, _) => limit(StatusCode::TOO_MANY_REQUESTS, codes::NUMBER_LIMIT),
            (Rule::PartnerRate, _) => limit(StatusCode::TOO_MANY_REQUESTS, codes::RATE),
            (Rule::AuthLockout, _) => limit(StatusCode::TOO_MANY_REQUESTS, codes::AUTH_LOCKOUT),
            (Rule::PartnerBusy, _) => limit(StatusCode::SERVICE_UNAVAILABLE, codes::CONCURRENCY),
            (Rule::AgentBusy, _) => limit(StatusCode::CONFLICT, codes::TO_BUSY),
            // Airtel sends no Idempotency-Key.
            (Rule::Duplicate | Rule::KeyInUse | Rule::KeyReused | Rule::KeyReplay, _) => {
                Failure::Internal(s.detail.clone())
            }
        };
        Answer {
            detail: Some(s.detail.clone()),
            ..Answer::failed(Event::Rejected, f)
        }
    }

    fn failed(event: Event, f: Failure) -> Answer {
        Answer {
            event,
            detail: Some(f.detail()),
            body: json_bytes(&f.body()),
            failure: Some(f),
        }
    }
}

impl Recorded for Answer {
    fn event(&self) -> Event {
        self.event.clone()
    }

    fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    fn answered(&self) -> calls::Answered<'_> {
        calls::Answered {
            status: self.failure.as_ref().map_or(200, |f| f.status().as_u16()),
            code: self.failure.as_ref().map(Failure::code),
            body: &self.body,
            error: self.detail.as_deref(),
        }
    }
}

fn answer_of(id: CallId, r: Outcome) -> (Answer, Option<FollowUp>) {
    match r {
        Ok((reply, follow)) if reply.event == Event::Failed => {
            let said =
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]).into_owned();
            let f = Failure::Internal(format!(
                "the provider answered HTTP {}: {said}",
                reply.status
            ));
            (Answer::failed(Event::Failed, f), follow)
        }
        Ok((reply, follow)) => {
            let body = json!({ "status": "success", "correlationId": id.to_string() });
            let answer = Answer {
                event: reply.event,
                failure: None,
                detail: None,
                body: json_bytes(&body),
            };
            (answer, follow)
        }
        Err(pe) => {
            let detail = format!("the click-to-call server: {pe}");
            // A refusal about a participant is told as Airtel tells it; any
            // other is c2cd's problem, not the partner's.
            let told = match &pe {
                ProviderError::Refused(r) => match r.about {
                    About::Number(Side::A) => Some(seed(codes::FROM_PARTICIPANT_REGEX)),
                    About::Number(Side::B) => Some(seed(codes::TO_PARTICIPANT_REGEX)),
                    About::Destination(_) => Some(bad(codes::FLOW, &r.to_string())),
                    _ => None,
                },
                _ => None,
            };
            let answer = match told {
                Some(refusal) => Answer {
                    detail: Some(detail),
                    ..Answer::failed(Event::Failed, Failure::Refused(refusal))
                },
                None => Answer::failed(Event::Failed, Failure::Internal(detail)),
            };
            (answer, None)
        }
    }
}

/// Airtel's time format: `2020-02-26T12:19:46.399+0000`.
pub fn airtel_time(ms: i64) -> String {
    let t = format_ms(ms);
    match t.strip_suffix('Z') {
        Some(t) => format!("{t}+0000"),
        None => t,
    }
}

/// Where the partner fetches the call's recording from c2cd.
fn recording_url(n: &Notice, data: &Value) -> String {
    let base = data["links"].as_str().unwrap_or_default();
    format!("{base}/v1/calls/{}/recording", n.call_id)
}

/// Airtel's real-time events and CDR, to each callback URL whose event type
/// asks for them.
pub struct AirtelFormat;

/// The Airtel event type and name of a core event, if it is reported.
fn event_name(e: &Event) -> Option<(&'static str, &'static str)> {
    Some(match e {
        Event::Accepted => ("CALL", "Initiated"),
        Event::Ringing(_) => ("CALL", "Ringing"),
        Event::Answered(_) => ("CALL", "Answered"),
        Event::Bridged => ("CALL", "Merged"),
        Event::Ended { .. } => ("CALL", "Removed"),
        Event::Cancelled => ("CALL", "Cancelled"),
        Event::Recording(_) => ("RECORD", "RecordingAvailable"),
        Event::Failed => ("ERROR", "Failed"),
        Event::Lost => ("ERROR", "Lost"),
        _ => return None,
    })
}

/// The leg status a CDR reports.
fn leg_status(l: &LegView) -> &'static str {
    match l.state {
        LegState::HungUp => "COMPLETED",
        LegState::Busy => "BUSY",
        LegState::NoAnswer => "NO_ANSWER",
        LegState::Failed => "FAILED",
        LegState::Cancelled => "CANCELLED",
        LegState::Created | LegState::Ringing | LegState::Answered => "IN_PROGRESS",
    }
}

impl AirtelFormat {
    fn cdr(n: &Notice, data: &Value) -> Value {
        let names: Vec<(String, String)> = data["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
            .collect();
        let name = |num: Option<&str>| {
            num.and_then(|num| names.iter().find(|(n, _)| n == num))
                .map(|(_, name)| name.clone())
        };
        let participants: Vec<Value> = n
            .legs
            .iter()
            .map(|l| {
                let cause = l.cause.unwrap_or(16);
                json!({
                    "participantAddress": l.number.as_deref().map(ten),
                    "participantName": name(l.number.as_deref()),
                    "leg": if l.side == Side::A { "from" } else { "to" },
                    "attempt": l.attempt,
                    "status": leg_status(l),
                    "startTime": airtel_time(l.created_at),
                    "answerTime": l.answered_at.map(airtel_time),
                    "endTime": l.ended_at.map(airtel_time),
                    "duration": match (l.answered_at, l.ended_at) {
                        (Some(a), Some(e)) => ((e - a).max(0) + 999) / 1000,
                        _ => 0,
                    },
                    "causeCode": cause.to_string(),
                    "sipCode": sip_for(cause, l.answered_at.is_some()).to_string(),
                    "causeCodeDescription": q850_text(cause),
                })
            })
            .collect();
        let cause = n.event.cause().unwrap_or(16);
        let billable = n.bridged_at.map_or(0, |b| ((n.at - b).max(0) + 999) / 1000);
        json!({
            "eventType": "CDR",
            "correlationId": n.call_id.to_string(),
            "callFlowId": data["callFlowId"],
            "customerId": data["customerId"],
            "callStatus": n.state.as_str().to_ascii_uppercase(),
            "startTime": airtel_time(n.created_at),
            "endTime": airtel_time(n.at),
            "duration": ((n.at - n.created_at).max(0) + 999) / 1000,
            "billableDuration": billable,
            "recordingUrl": n.recording.map(|_| recording_url(n, data)),
            "causeCode": cause.to_string(),
            "causeCodeDescription": q850_text(cause),
            "participants": participants,
        })
    }

    fn event(n: &Notice, kind: &str, name: &str) -> Value {
        let leg = n.event.leg();
        let address = leg
            .and_then(|l| l.number.as_deref())
            .or(n.number)
            .or(n.numbers[0])
            .map(ten);
        let mut v = json!({
            "eventType": kind,
            "participantAddress": address,
            "event": name,
            "time": airtel_time(n.at),
            "correlationId": n.call_id.to_string(),
        });
        if let Some(cause) = n.event.cause() {
            // A leg that ends normally and ends the call is the answered one
            // hanging up; one that does not lost the race and was cancelled.
            let answered = match n.event {
                Event::Ended { outcome, last, .. } => {
                    *outcome == crate::core::call::LegOutcome::Normal && *last
                }
                _ => n.bridged_at.is_some(),
            };
            v["metaData"] = json!({
                "causeCode": cause.to_string(),
                "sipCode": sip_for(cause, answered).to_string(),
                "causeCodeDescription": q850_text(cause),
            });
        }
        if let (Event::Recording(_), Some(data)) = (n.event, n.data) {
            v["metaData"] = json!({ "recordingUrl": recording_url(n, data) });
        }
        v
    }
}

impl CallbackFormat for AirtelFormat {
    fn name(&self) -> &'static str {
        "airtel"
    }

    fn format(&self, n: &Notice) -> Vec<Payload> {
        let Some(data) = n.data else {
            return Vec::new();
        };
        let urls = data["callbacks"].as_array().cloned().unwrap_or_default();
        let mut bodies: Vec<(&str, Value)> = Vec::new();
        if let Some((kind, name)) = event_name(n.event) {
            bodies.push((kind, Self::event(n, kind, name)));
        }
        if n.state.is_terminal() && !n.legs.is_empty() {
            bodies.push(("CDR", Self::cdr(n, data)));
        }
        let mut out = Vec::new();
        for (kind, body) in bodies {
            for u in &urls {
                let wants = u["eventType"].as_str().unwrap_or("ALL");
                if wants != "ALL" && wants != kind {
                    continue;
                }
                let headers: Vec<(String, String)> = u["headers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| Some((h[0].as_str()?.to_string(), h[1].as_str()?.to_string())))
                    .collect();
                out.push(Payload {
                    content_type: "application/json",
                    body: body.to_string().into_bytes(),
                    url: u["url"].as_str().map(str::to_string),
                    method: u["method"].as_str().map(str::to_string),
                    headers,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_in_the_seeds_format() {
        assert_eq!(
            airtel_time(1_582_719_586_399),
            "2020-02-26T12:19:46.399+0000"
        );
    }

    #[test]
    fn numbers_are_written_as_ten_digits() {
        assert_eq!(ten("+919810000001"), "9810000001");
        assert_eq!(ten("9810000001"), "9810000001");
    }

    #[test]
    fn the_500_body_is_the_seeds() {
        assert_eq!(
            internal_body().to_string(),
            r#"{"httpStatus":500,"displayMessage":null,"errorMessage":"2","errorCode":"AIRTEL_ONLINE_UNCAUGHT_ERROR","errorType":null,"apiPath":null,"errorDetails":null,"resourceLayer":"UNKNOWN","errorMeta":null}"#
        );
    }
}
