//! The native dialect: c2cd's own JSON API, described by `src/http/openapi.json`
//! (served at `/v1/openapi.json`; the integration tests check the server against it). `POST /v1/calls` is its front door (HTTP Basic auth with
//! a partner's `username` and `password`); errors are RFC 9457 problem details
//! (`application/problem+json`) with a stable `code`. The native JSON callback
//! format, which dialects without one of their own fall back to, is here too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    basic_credentials, basic_partner, content_type_is, place, record_refusal, record_stopped,
    refuse_locked, stop_headers, usable, BasicError, CallbackFormat, Notice, Outcome, Payload,
    Recorded, CALL_ID_HEADER, REPLAY_HEADER,
};
use crate::app::App;
use crate::config::{self, Dialect, Partner};
use crate::core::call::{next, CallState, Event};
use crate::core::phone::Address;
use crate::core::plan::{self, CallPlan, Participant, SidePlan, Strategy};
use crate::core::{format_ms, CallId};
use crate::guard::{self, Ask, Rule, Stop};
use crate::http::{read_body, BodyError, Resp};
use crate::provider::{FollowUp, Originate, ProviderError};
use crate::store::{calls, StoreError};

/// Why a native request was refused, each with its HTTP status and stable code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NativeError {
    #[error("send Authorization: Basic with the partner's username and password")]
    Unauthorized,
    #[error("the partner may not use the native API, or is disabled")]
    Forbidden,
    #[error("the body is not valid JSON for this request: {0}")]
    Malformed(String),
    #[error("the request is not valid")]
    Invalid(Vec<(String, String)>),
    #[error("send Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than server.max_body_bytes")]
    TooLarge,
    #[error("the body did not arrive in time")]
    Timeout,
    #[error("{0}")]
    ProviderRefuses(String),
    #[error("the click-to-call server could not be reached")]
    ProviderUnreachable,
    #[error("the click-to-call server did not answer in time")]
    ProviderTimeout,
    #[error("the click-to-call server refused the call")]
    ProviderFailed,
    // The entry, its reason and its list stay in the record: not told.
    #[error("the {0} number is on the do-not-call list")]
    Blocked(&'static str),
    #[error("no channel is free on the click-to-call servers; retry shortly")]
    NoChannel,
    #[error("outside the partner's hours: {0}")]
    Closed(String),
    #[error("too many calls to the A number lately: {0}")]
    NumberLimit(String),
    #[error("the partner's call rate is spent: {0}")]
    RateLimited(String),
    #[error("{0}")]
    AuthLockout(String),
    #[error("the partner has too many calls in progress: {0}")]
    PartnerBusy(String),
    #[error("the B number is busy in another call: {0}")]
    BBusy(String),
    #[error("the Idempotency-Key is in use by a request not yet answered; retry shortly")]
    KeyInUse,
    #[error("the Idempotency-Key was used with another body")]
    KeyReused,
    #[error("c2cd is overloaded; retry shortly")]
    Overloaded,
    #[error("internal error; see the log")]
    Internal,
}

impl NativeError {
    pub fn status(&self) -> StatusCode {
        match self {
            NativeError::Unauthorized => StatusCode::UNAUTHORIZED,
            NativeError::Forbidden | NativeError::Blocked(_) | NativeError::Closed(_) => {
                StatusCode::FORBIDDEN
            }
            NativeError::Malformed(_) => StatusCode::BAD_REQUEST,
            NativeError::Invalid(_) | NativeError::ProviderRefuses(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            NativeError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NativeError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            NativeError::Timeout => StatusCode::REQUEST_TIMEOUT,
            NativeError::ProviderUnreachable | NativeError::ProviderFailed => {
                StatusCode::BAD_GATEWAY
            }
            NativeError::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            NativeError::NumberLimit(_)
            | NativeError::RateLimited(_)
            | NativeError::AuthLockout(_) => StatusCode::TOO_MANY_REQUESTS,
            NativeError::BBusy(_) | NativeError::KeyInUse | NativeError::KeyReused => {
                StatusCode::CONFLICT
            }
            NativeError::PartnerBusy(_) | NativeError::NoChannel | NativeError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            NativeError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code in the problem's `code` and in `calls.result_code`.
    pub fn code(&self) -> &'static str {
        match self {
            NativeError::Unauthorized => "unauthorized",
            NativeError::Forbidden => "forbidden",
            NativeError::Malformed(_) => "malformed",
            NativeError::Invalid(_) => "invalid",
            NativeError::UnsupportedMediaType => "unsupported_media_type",
            NativeError::TooLarge => "too_large",
            NativeError::Timeout => "timeout",
            NativeError::ProviderRefuses(_) => "provider_refuses",
            NativeError::ProviderUnreachable => "provider_unreachable",
            NativeError::ProviderTimeout => "provider_timeout",
            NativeError::ProviderFailed => "provider_failed",
            NativeError::Blocked(_) => "blocked",
            NativeError::Closed(_) => "outside_hours",
            NativeError::NoChannel => "no_channel",
            NativeError::NumberLimit(_) => "number_limit",
            NativeError::RateLimited(_) => "rate_limited",
            NativeError::AuthLockout(_) => "auth_lockout",
            NativeError::PartnerBusy(_) => "partner_busy",
            NativeError::BBusy(_) => "b_busy",
            NativeError::KeyInUse => "idempotency_key_in_use",
            NativeError::KeyReused => "idempotency_key_reused",
            NativeError::Overloaded => "overloaded",
            NativeError::Internal => "internal",
        }
    }

    /// What the partner is told of a request the guard rails stopped; `None`
    /// for a replay, which is answered with the earlier call.
    fn from_stop(s: &Stop) -> Option<Self> {
        let why = s.detail.clone();
        Some(match s.rule {
            Rule::Duplicate | Rule::KeyReplay => return None,
            Rule::Disabled => NativeError::Forbidden,
            Rule::Invalid(side) => {
                NativeError::Invalid(vec![(format!("{}.participants", side.as_str()), why)])
            }
            Rule::Blocked(side) => NativeError::Blocked(match side {
                crate::core::call::Side::A => "A",
                crate::core::call::Side::B => "B",
            }),
            Rule::Closed => NativeError::Closed(why),
            Rule::ProviderBusy => NativeError::NoChannel,
            Rule::CallerId(side) => {
                NativeError::Invalid(vec![(format!("{}.caller_id", side.as_str()), why)])
            }
            Rule::KeyInUse => NativeError::KeyInUse,
            Rule::KeyReused => NativeError::KeyReused,
            Rule::NumberLimit => NativeError::NumberLimit(why),
            Rule::PartnerRate => NativeError::RateLimited(why),
            Rule::AuthLockout => NativeError::AuthLockout(why),
            Rule::PartnerBusy => NativeError::PartnerBusy(why),
            Rule::AgentBusy => NativeError::BBusy(why),
        })
    }

    fn from_provider(e: &ProviderError) -> Self {
        match e {
            ProviderError::Unreachable(_) | ProviderError::BadResponse(_) => {
                NativeError::ProviderUnreachable
            }
            ProviderError::Timeout(_) => NativeError::ProviderTimeout,
            ProviderError::Refused(_) => NativeError::ProviderFailed,
        }
    }

    /// The problem document (RFC 9457).
    pub fn problem(&self, id: CallId) -> Value {
        let mut v = json!({
            "type": format!("urn:c2cd:problem:{}", self.code()),
            "title": self.to_string(),
            "status": self.status().as_u16(),
            "code": self.code(),
            "call_id": id.to_string(),
        });
        if let NativeError::Invalid(errors) = self {
            v["errors"] = errors
                .iter()
                .map(|(field, message)| json!({ "field": field, "message": message }))
                .collect();
            v["detail"] = errors
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
                .into();
        }
        v
    }

    /// One line for the log and the call's `error`.
    fn detail(&self) -> String {
        match self {
            NativeError::Invalid(errors) => errors
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; "),
            e => e.to_string(),
        }
    }
}

/// The body of `POST /v1/calls`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    a: SideBody,
    b: SideBody,
    /// Seconds; at most the partner's `time_limit`, which is the default.
    time_limit: Option<u64>,
    record: Option<bool>,
    /// Overrides the partner's `callback_url`; its host must be in `callback_hosts`.
    callback_url: Option<String>,
    /// The partner's own reference, returned in callbacks (at most 128 characters).
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SideBody {
    participants: Vec<ParticipantBody>,
    strategy: Option<String>,
    caller_id: Option<String>,
    /// Seconds.
    ring_timeout: Option<u64>,
    /// Seconds.
    retry_delay: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantBody {
    number: String,
    caller_id: Option<String>,
    retries: Option<u8>,
}

/// The longest `reference` a request may carry.
const MAX_REFERENCE: usize = 128;

/// A validated request: the plan, where its callbacks go, and its reference.
struct Validated {
    plan: CallPlan,
    callback_url: Option<String>,
    reference: Option<String>,
}

/// Collects every problem with a request, each with the field it is about.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }

    /// A phone number (E.164 with `+`) or a local extension (digits alone).
    fn number(&mut self, field: String, s: &str) -> Option<Address> {
        match Address::parse(s) {
            Ok(n) => Some(n),
            Err(e) => {
                self.add(
                    field,
                    format!(
                        "must be an E.164 number with a leading +, or an extension of digits ({e})"
                    ),
                );
                None
            }
        }
    }

    fn seconds(
        &mut self,
        field: String,
        v: Option<u64>,
        default: Duration,
        range: (Duration, Duration),
    ) -> Duration {
        let Some(s) = v else { return default };
        let d = Duration::from_secs(s);
        if d < range.0 || d > range.1 {
            self.add(
                field,
                format!(
                    "must be {} to {} seconds",
                    range.0.as_secs(),
                    range.1.as_secs()
                ),
            );
            return default;
        }
        d
    }

    fn side(&mut self, name: &str, s: &SideBody, ring_timeout: Duration) -> SidePlan {
        let strategy = match s.strategy.as_deref() {
            None => Strategy::Sequential,
            Some(x) => Strategy::parse(x).unwrap_or_else(|| {
                self.add(
                    format!("{name}.strategy"),
                    format!("{x:?} is not one of sequential, parallel, round_robin"),
                );
                Strategy::Sequential
            }),
        };
        if s.participants.is_empty() || s.participants.len() > plan::MAX_PARTICIPANTS {
            self.add(
                format!("{name}.participants"),
                format!("must list 1 to {} participants", plan::MAX_PARTICIPANTS),
            );
        }
        let mut participants = Vec::new();
        for (i, p) in s
            .participants
            .iter()
            .enumerate()
            .take(plan::MAX_PARTICIPANTS)
        {
            let at = |k: &str| format!("{name}.participants[{i}].{k}");
            let number = self.number(at("number"), &p.number);
            let caller_id = p
                .caller_id
                .as_deref()
                .and_then(|c| self.number(at("caller_id"), c))
                .map(|n| n.as_str().to_string());
            let retries = p.retries.unwrap_or(0);
            if retries > plan::MAX_RETRIES {
                self.add(at("retries"), format!("must be 0 to {}", plan::MAX_RETRIES));
            }
            if let Some(number) = number {
                participants.push(Participant {
                    number,
                    caller_id,
                    retries: retries.min(plan::MAX_RETRIES),
                });
            }
        }
        let caller_id = s
            .caller_id
            .as_deref()
            .and_then(|c| self.number(format!("{name}.caller_id"), c))
            .map(|n| n.as_str().to_string());
        SidePlan {
            participants,
            strategy,
            caller_id,
            ring_timeout: self.seconds(
                format!("{name}.ring_timeout"),
                s.ring_timeout,
                ring_timeout,
                plan::RING_TIMEOUT_RANGE,
            ),
            retry_delay: self.seconds(
                format!("{name}.retry_delay"),
                s.retry_delay,
                Duration::ZERO,
                (Duration::ZERO, plan::MAX_RETRY_DELAY),
            ),
            start: 0,
        }
    }
}

/// Checks a request against the partner's limits and builds its plan.
/// What `handle` makes of a body before anything is recorded: for the fuzz
/// target (`crate::fuzz`).
pub fn fuzz_body(body: &[u8], partner: &Partner, cfg: &config::Config) {
    if let Ok(b) = serde_json::from_slice::<CallBody>(body) {
        let _ = validate(&b, partner, cfg);
    }
}

fn validate(
    body: &CallBody,
    partner: &Partner,
    cfg: &config::Config,
) -> Result<Validated, NativeError> {
    let mut p = Problems::default();
    let ring = cfg.calls.ring_timeout;
    let mut a = p.side("a", &body.a, ring);
    let mut b = p.side("b", &body.b, ring);
    // Unless told otherwise, each side is shown the other's first number.
    if a.caller_id.is_none() {
        a.caller_id = b.first().map(|x| x.number.as_str().to_string());
    }
    if b.caller_id.is_none() {
        b.caller_id = body
            .a
            .participants
            .first()
            .and_then(|x| Address::parse(&x.number).ok())
            .map(|n| n.as_str().to_string());
    }
    let cap = u64::from(partner.time_limit);
    let time_limit = match body.time_limit {
        None => cap,
        Some(t) if (1..=cap).contains(&t) => t,
        Some(_) => {
            p.add(
                "time_limit",
                format!("must be 1 to {cap} seconds (the partner's limit)"),
            );
            cap
        }
    };
    if body
        .reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REFERENCE)
    {
        p.add(
            "reference",
            format!("must be at most {MAX_REFERENCE} characters"),
        );
    }
    let callback_url = match body.callback_url.as_deref() {
        None => partner.callback_url.as_ref().map(|u| u.to_string()),
        Some(u) => match config::check_callback_url(u, &partner.callback_hosts) {
            Err(e) => {
                p.add("callback_url", e);
                None
            }
            Ok(_)
                if partner
                    .callback_secrets
                    .iter()
                    .all(|s| s.expose().len() < 16) =>
            {
                p.add(
                    "callback_url",
                    "the partner has no callback_secrets to sign callbacks with",
                );
                None
            }
            Ok(uri) => Some(uri.to_string()),
        },
    };
    if !p.0.is_empty() {
        return Err(NativeError::Invalid(p.0));
    }
    Ok(Validated {
        plan: CallPlan {
            a,
            b,
            time_limit: Duration::from_secs(time_limit),
            record: body.record.unwrap_or(false),
        },
        callback_url,
        reference: body.reference.clone(),
    })
}

fn respond(id: CallId, status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        h.insert(CALL_ID_HEADER, v);
    }
    r
}

/// A JSON body as answered and as recorded: pretty, with a final newline.
fn json_bytes(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

const PROBLEM_JSON: &str = "application/problem+json";

fn problem(id: CallId, e: &NativeError) -> Resp {
    let mut r = respond(id, e.status(), PROBLEM_JSON, json_bytes(&e.problem(id)));
    match e {
        NativeError::Unauthorized => {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"c2cd\", charset=\"UTF-8\""),
            );
        }
        NativeError::Overloaded => {
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    r
}

fn store_failure(id: CallId, e: &StoreError) -> Resp {
    log::error!("call {id}: native request not recorded: {e}");
    match e {
        StoreError::Busy => problem(id, &NativeError::Overloaded),
        _ => problem(id, &NativeError::Internal),
    }
}

/// Records a request c2cd refuses itself, then answers it.
async fn reject(app: &App, rec: calls::NewCall, e: NativeError, note: Option<String>) -> Resp {
    let id = rec.id;
    let mut refusal = Answer::refused(id, e.clone());
    if let Some(n) = note {
        refusal.detail = Some(format!("{} ({n})", e.detail()));
    }
    match record_refusal(app, rec, refusal).await {
        Ok(()) => problem(id, &e),
        Err(se) => store_failure(id, &se),
    }
}

/// `POST /v1/calls`.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Resp {
    let app = &*app;
    let rt = app.runtime();
    let limits = &rt.config.server;
    let mut rec = calls::NewCall::received(
        "native",
        remote,
        req.method().as_str(),
        req.uri().query().unwrap_or(""),
    );
    let is_json = content_type_is(&req, "application/json");
    let auth = req.headers().get(AUTHORIZATION).cloned();
    let key = req.headers().get(IDEMPOTENCY_KEY).cloned();
    match read_body(req, limits.max_body_bytes, limits.body_read_timeout).await {
        Ok(b) => rec.received_body = b.to_vec(),
        Err(BodyError::TooLarge) => return reject(app, rec, NativeError::TooLarge, None).await,
        Err(BodyError::Timeout) => return reject(app, rec, NativeError::Timeout, None).await,
        Err(BodyError::Io(e)) => {
            return reject(app, rec, NativeError::Malformed(format!("body: {e}")), None).await
        }
    }
    let partner = match basic_partner(app, &rt.config, remote.ip(), auth.as_ref(), Dialect::Native)
    {
        Ok(p) => p,
        Err(e) => {
            let e = match e {
                BasicError::Unauthorized => NativeError::Unauthorized,
                BasicError::Forbidden => NativeError::Forbidden,
                BasicError::Locked(l) => {
                    let id = rec.id;
                    let e = NativeError::AuthLockout(l.detail());
                    let refusal = Answer::refused(id, e.clone());
                    let answer = || problem(id, &e);
                    return refuse_locked(app, rec, refusal, &l, answer, |se| {
                        store_failure(id, se)
                    })
                    .await;
                }
            };
            // Who tried is kept for the operator; the password never is.
            let user = basic_credentials(auth.as_ref()).map(|(u, _)| format!("username {u:?}"));
            rec.auth_ok = Some(false);
            return reject(app, rec, e, user).await;
        }
    };
    rec.partner_id = Some(partner.id.clone());
    rec.auth_ok = Some(true);
    if !is_json {
        return reject(app, rec, NativeError::UnsupportedMediaType, None).await;
    }
    let key = match key.map(|k| idempotency_key(&k)) {
        None => None,
        Some(Ok(k)) => Some((k, hex_sha256(&rec.received_body))),
        Some(Err(why)) => {
            let e = NativeError::Invalid(vec![("Idempotency-Key".into(), why.into())]);
            return reject(app, rec, e, None).await;
        }
    };
    if let Some((k, digest)) = &key {
        match replayed(app, rec, &partner.id, k, digest).await {
            Ok(r) => return r,
            Err(r) => rec = r,
        }
    }
    let body: CallBody = match serde_json::from_slice(&rec.received_body) {
        Ok(b) => b,
        Err(e) => return reject(app, rec, NativeError::Malformed(e.to_string()), None).await,
    };
    let mut v = match validate(&body, partner, &rt.config) {
        Ok(v) => v,
        Err(e) => return reject(app, rec, e, None).await,
    };
    app.rotation.assign(&mut v.plan);
    let plan = Arc::new(v.plan);
    let Some(o) = Originate::for_plan(rec.id, plan.clone(), partner) else {
        let e = NativeError::Internal;
        return reject(app, rec, e, Some("a side without participants".into())).await;
    };
    rec.set_plan(&plan);
    rec.memo = v.reference;
    let route = match usable(&rt.providers.route(&partner.route), &plan) {
        Ok(r) => r,
        Err(why) => {
            return reject(app, rec, NativeError::ProviderRefuses(why), None).await;
        }
    };
    rec.callback_url = v.callback_url;

    let (id, at) = (rec.id, rec.at);
    let mut ask = Ask::new(&rt.config, partner, at);
    ask.key = key;
    let stopped = move |s: &Stop| Answer::stopped(id, s);
    let placed = place(app, rec, &route, &o, ask, stopped, |r| answer_of(id, at, r));
    let (answer, stop) = match placed.await {
        Ok(placed) => placed,
        Err(e) => return store_failure(id, &e),
    };
    match &answer.error {
        None => log::info!(
            "call {id}: native partner {:?}: {}",
            partner.id,
            answer.event.kind()
        ),
        Some(e) => log::warn!(
            "call {id}: native partner {:?}: {}",
            partner.id,
            answer.detail.as_deref().unwrap_or(e.code())
        ),
    }
    let mut r = match &answer.error {
        Some(e) => problem(id, e),
        None => {
            let shown = stop.as_ref().and_then(|s| s.replay_of).unwrap_or(id);
            let status = StatusCode::from_u16(answer.answered().status).unwrap_or(StatusCode::OK);
            let mut r = respond(shown, status, "application/json", answer.body);
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/calls/{shown}")) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
    };
    stop_headers(&mut r, stop.as_ref());
    r
}

/// The header that makes `POST /v1/calls` safe to retry.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(v: &HeaderValue) -> Result<String, &'static str> {
    let k = v.to_str().map_err(|_| "must be visible ASCII")?.trim();
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 255 visible ASCII characters");
    }
    Ok(k.to_string())
}

fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The answer to a request whose `Idempotency-Key` was used before, recorded:
/// the first answer again for the same body, a conflict for another, or "in
/// use" while the first is not answered yet. The request back when the key is
/// new (or forgotten).
async fn replayed(
    app: &App,
    rec: calls::NewCall,
    partner: &str,
    key: &str,
    digest: &str,
) -> Result<Resp, calls::NewCall> {
    let (p, k, now) = (partner.to_string(), key.to_string(), rec.at);
    let found = app
        .store
        .read(move |c| {
            let Some(used) = guard::key_use(c, &p, &k, now)? else {
                return Ok(None);
            };
            let first = guard::answer_of(c, &used.call_id)?;
            Ok(Some((used, first)))
        })
        .await;
    let (used, first) = match found {
        Ok(Some(f)) => f,
        Ok(None) => return Err(rec),
        Err(e) => return Ok(store_failure(rec.id, &e)),
    };
    let id = rec.id;
    let of = CallId::parse(&used.call_id);
    let (rule, e) = match first {
        _ if used.digest != digest => (Rule::KeyReused, NativeError::KeyReused),
        None => (Rule::KeyInUse, NativeError::KeyInUse),
        Some((status, body)) => {
            let detail = format!("Idempotency-Key {key:?}: a replay of call {}", used.call_id);
            let answer = Answer {
                event: Event::Rejected,
                error: None,
                detail: Some(detail),
                body: Bytes::from(body),
                status: Some(status),
            };
            let body = answer.body.clone();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return Ok(
                match record_stopped(app, rec, answer, Some((Rule::KeyReplay, of))).await {
                    Ok(()) => {
                        let mut r = respond(of.unwrap_or(id), status, "application/json", body);
                        r.headers_mut()
                            .insert("idempotent-replayed", HeaderValue::from_static("true"));
                        r.headers_mut()
                            .insert(REPLAY_HEADER, HeaderValue::from_static("true"));
                        r
                    }
                    Err(se) => store_failure(id, &se),
                },
            );
        }
    };
    let refusal = Answer::refused(id, e.clone());
    Ok(
        match record_stopped(app, rec, refusal, Some((rule, of))).await {
            Ok(()) => {
                let mut r = problem(id, &e);
                if rule == Rule::KeyInUse {
                    r.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                }
                r
            }
            Err(se) => store_failure(id, &se),
        },
    )
}

/// What the provider's answer means for the partner, and what the call records.
#[derive(Clone)]
struct Answer {
    event: Event,
    /// Set when the call could not be placed.
    error: Option<NativeError>,
    /// Why, in a line: what the provider said or why it could not be asked.
    detail: Option<String>,
    /// The body answered: the created call, or the problem.
    body: Bytes,
    /// The status of a success other than 201 Created (a replay).
    status: Option<u16>,
}

impl Answer {
    fn refused(id: CallId, e: NativeError) -> Answer {
        Answer {
            event: Event::Rejected,
            detail: Some(e.detail()),
            body: json_bytes(&e.problem(id)),
            error: Some(e),
            status: None,
        }
    }

    /// The answer to a request the guard rails stopped: a replay is the
    /// earlier call, answered 200.
    fn stopped(id: CallId, s: &Stop) -> Answer {
        if let Some(at) = s.deferred_to {
            let mut scheduled = json!({
                "id": id.to_string(),
                "state": CallState::Scheduled.as_str(),
                "start_at": format_ms(at),
                "href": format!("/v1/calls/{id}"),
            });
            if let Some(until) = s.queue_until {
                scheduled["queued_until"] = format_ms(until).into();
            }
            return Answer {
                event: Event::Deferred,
                error: None,
                detail: Some(s.detail.clone()),
                body: json_bytes(&scheduled),
                status: Some(202),
            };
        }
        match (NativeError::from_stop(s), s.replay_of) {
            (e, None) | (e @ Some(_), _) => {
                let e = e.unwrap_or(NativeError::Internal);
                Answer {
                    detail: Some(s.detail.clone()),
                    ..Answer::refused(id, e)
                }
            }
            (None, Some(of)) => {
                let earlier = json!({
                    "id": of.to_string(),
                    "state": s.replay_state,
                    "href": format!("/v1/calls/{of}"),
                    "replay": true,
                });
                Answer {
                    event: Event::Rejected,
                    error: None,
                    detail: Some(s.detail.clone()),
                    body: json_bytes(&earlier),
                    status: Some(200),
                }
            }
        }
    }

    fn failed(id: CallId, e: NativeError, detail: String) -> Answer {
        Answer {
            detail: Some(detail),
            ..Answer::refused(id, e)
        }
        .with_event(Event::Failed)
    }

    fn with_event(self, event: Event) -> Answer {
        Answer { event, ..self }
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
            status: match (&self.error, self.status) {
                (Some(e), _) => e.status().as_u16(),
                (None, s) => s.unwrap_or(201),
            },
            code: self.error.as_ref().map(NativeError::code),
            body: &self.body,
            error: self.detail.as_deref(),
        }
    }
}

fn answer_of(id: CallId, at: i64, r: Outcome) -> (Answer, Option<FollowUp>) {
    match r {
        Ok((reply, follow)) if reply.event == Event::Failed => {
            let said =
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]).into_owned();
            let detail = format!("the provider answered HTTP {}: {said}", reply.status);
            (
                Answer::failed(id, NativeError::ProviderFailed, detail),
                follow,
            )
        }
        Ok((reply, follow)) => {
            let created = json!({
                "id": id.to_string(),
                "state": next(CallState::Originating, &reply.event).map(CallState::as_str),
                "created_at": format_ms(at),
                "href": format!("/v1/calls/{id}"),
            });
            let answer = Answer {
                event: reply.event,
                error: None,
                detail: None,
                body: json_bytes(&created),
                status: None,
            };
            (answer, follow)
        }
        Err(pe) => {
            let e = NativeError::from_provider(&pe);
            (Answer::failed(id, e, pe.to_string()), None)
        }
    }
}

/// Callbacks as JSON: the event's id and sequence number, the call, its state,
/// the leg and the cause.
pub struct NativeFormat;

impl CallbackFormat for NativeFormat {
    fn name(&self) -> &'static str {
        "native"
    }

    fn format(&self, n: &Notice) -> Vec<Payload> {
        let leg = n.event.leg().map(|l| {
            json!({
                "side": l.side.as_str(),
                "attempt": l.attempt,
                "number": l.number.as_deref().or(n.number),
            })
        });
        let recording = match n.event {
            crate::core::call::Event::Recording(r) => Some(r.as_str()),
            _ => None,
        };
        let mut v = json!({
            "event_id": n.event_id,
            "seq": n.seq,
            "call_id": n.call_id.to_string(),
            "partner_id": n.partner_id,
            "at": format_ms(n.at),
            "event": n.event.kind(),
            "state": n.state.as_str(),
            "leg": leg,
            "cause": n.event.cause(),
        });
        if let Some(m) = n.memo {
            v["reference"] = m.into();
        }
        if let Some(r) = recording {
            v["recording"] = r.into();
        }
        vec![Payload::new("application/json", v.to_string().into_bytes())]
    }
}
