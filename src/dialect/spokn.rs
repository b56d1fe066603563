//! The Spokn click-to-call API (seed 002): `POST /c2c/1.0/call`, HTTP Basic
//! auth, a form-encoded body, an XML answer in the seed's namespace, and per-leg
//! callbacks once the call ends.
//!
//! Decisions where the seed is silent (also in the README):
//! - Input errors are answered HTTP 200 with their return code (102–109): the
//!   seed lists no 4xx status for them. Failed auth is HTTP 401 / 101, an
//!   unknown resource (any other path or method under `/c2c/`) 404 / 100, a body
//!   that is not form-encoded 415 / 102, and a failure inside c2cd or at its
//!   click-to-call server HTTP 500 with code 500, for which the seed has none.
//! - `desc` is the seed's text for the code; what exactly was wrong goes to the
//!   log and the call's row.
//! - A phone number has `+` and a country code; digits alone are a Spokn ID: a
//!   local extension on the box.
//! - Parameters only enterprise partners may set (`apartycid`, `bpartycid`,
//!   `url`) are refused with 102 for the others, rather than silently ignored.
//! - Unknown parameters are ignored; a parameter given twice with different
//!   values is 102.
//! - A number's `+` sent without percent-encoding arrives as a space; a leading
//!   space before digits is read as the `+` it was.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::{
    basic_credentials, basic_partner, content_type_is, place, record_refusal, refuse_locked,
    stop_headers, usable, BasicError, CallbackFormat, LegView, Notice, Outcome, Payload, Recorded,
    CALL_ID_HEADER,
};
use crate::app::App;
use crate::config::{self, Dialect, Partner};
use crate::core::call::{Event, LegState, Side};
use crate::core::money::Money;
use crate::core::phone::Address;
use crate::core::plan::{CallPlan, Participant, SidePlan, Strategy};
use crate::core::{format_ms, CallId};
use crate::guard::{Ask, Rule, Stop};
use crate::http::{read_body, BodyError, Resp};
use crate::provider::{About, FollowUp, Originate, ProviderError};
use crate::store::{calls, StoreError};

/// The path of the one resource.
pub const PATH: &str = "/c2c/1.0/call";
/// The XML namespace of every answer.
pub const NAMESPACE: &str = "http://api.spokn.com/api/c2c.xsd";
/// The longest token.
pub const MAX_TOKEN: usize = 128;
/// The longest call, in minutes.
pub const MAX_DURATION_MIN: u64 = 60;
/// Retries of aparty at most, and the longest wait between them.
pub const MAX_RETRIES: u8 = 3;
pub const MAX_RETRY_TIME_S: u64 = 10;

/// Why a Spokn request was not accepted; each has its return code and HTTP
/// status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoknError {
    #[error("no such resource")]
    NotFound,
    #[error("authentication failed")]
    Unauthorized,
    #[error("invalid input parameters: {0}")]
    Invalid(String),
    #[error("Content-Type must be application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("bad aparty number: {0}")]
    BadAparty(String),
    #[error("bad bparty number: {0}")]
    BadBparty(String),
    #[error("aparty destination not supported: {0}")]
    AUnsupported(String),
    #[error("bparty destination not supported: {0}")]
    BUnsupported(String),
    #[error("unable to fetch credits information: {0}")]
    CreditsUnavailable(String),
    #[error("insufficient credits for call: {0}")]
    NoCredits(String),
    #[error("token longer than 128 characters")]
    TokenTooLong,
    #[error("c2cd is overloaded")]
    Overloaded,
    #[error("{0}")]
    Internal(String),
}

impl SpoknError {
    /// The `<code/>` of the answer.
    pub fn code(&self) -> u16 {
        match self {
            SpoknError::NotFound => 100,
            SpoknError::Unauthorized => 101,
            SpoknError::Invalid(_) | SpoknError::UnsupportedMediaType => 102,
            SpoknError::BadAparty(_) => 103,
            SpoknError::BadBparty(_) => 104,
            SpoknError::AUnsupported(_) => 106,
            SpoknError::CreditsUnavailable(_) => 105,
            SpoknError::BUnsupported(_) => 107,
            SpoknError::NoCredits(_) => 108,
            SpoknError::TokenTooLong => 109,
            SpoknError::Overloaded | SpoknError::Internal(_) => 500,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            SpoknError::NotFound => StatusCode::NOT_FOUND,
            SpoknError::Unauthorized => StatusCode::UNAUTHORIZED,
            SpoknError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            SpoknError::Overloaded | SpoknError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::OK,
        }
    }
}

/// The seed's description of a return code.
pub fn desc(code: u16) -> &'static str {
    match code {
        200 => "Request Successful",
        100 => "Resource not found",
        101 => "Authentication failed",
        102 => "Invalid input parameters",
        103 => "Bad aparty number",
        104 => "Bad bparty number",
        105 => "Unable to fetch credits information",
        106 => "aparty destination not supported",
        107 => "bparty destination not supported",
        108 => "Insufficient credits for call",
        109 => "Token length exceeded. Max length is 128 characters.",
        _ => "Internal Server Error",
    }
}

/// The XML answer for `code`, in the seed's shape.
pub fn answer_body(code: u16) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<spokn xmlns=\"{NAMESPACE}\">\n  <c2c version=\"1.0\">\n    <code>{code}</code>\n    <desc>{}</desc>\n  </c2c>\n</spokn>\n",
        quick_xml::escape::escape(desc(code))
    )
}

const XML: &str = "application/xml; charset=utf-8";

fn respond(id: CallId, status: StatusCode, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(XML));
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        h.insert(CALL_ID_HEADER, v);
    }
    r
}

fn error_response(id: CallId, e: &SpoknError) -> Resp {
    let mut r = respond(id, e.status(), Bytes::from(answer_body(e.code())));
    match e {
        SpoknError::Unauthorized => {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"c2c\", charset=\"UTF-8\""),
            );
        }
        SpoknError::Overloaded => {
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    r
}

/// The request's parameters, each at most once.
#[derive(Debug, Default)]
struct Params {
    aparty: Option<String>,
    apartycid: Option<String>,
    bparty: Option<String>,
    bpartycid: Option<String>,
    duration: Option<String>,
    token: Option<String>,
    maxretries: Option<String>,
    retrytime: Option<String>,
    url: Option<String>,
}

/// A party or caller ID as sent. A `+` that was not percent-encoded arrives as
/// a space (form encoding); numbers never start with one, so it is read back as
/// the `+` it was.
fn party(v: &str) -> String {
    match v.strip_prefix(' ') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => format!("+{rest}"),
        _ => v.to_string(),
    }
}

/// What `handle` makes of a body before anything is recorded: for the fuzz
/// target (`crate::fuzz`).
pub fn fuzz_body(body: &[u8], partner: &Partner, cfg: &crate::config::Config) {
    if let Ok(p) = parse_params(body) {
        let _ = validate(&p, partner, cfg);
    }
}

fn parse_params(body: &[u8]) -> Result<Params, SpoknError> {
    let mut p = Params::default();
    for (k, v) in form_urlencoded::parse(body) {
        let v = match k.as_ref() {
            "aparty" | "bparty" | "apartycid" | "bpartycid" => party(&v).into(),
            _ => v,
        };
        let slot = match k.as_ref() {
            "aparty" => &mut p.aparty,
            "apartycid" => &mut p.apartycid,
            "bparty" => &mut p.bparty,
            "bpartycid" => &mut p.bpartycid,
            "duration" => &mut p.duration,
            "token" => &mut p.token,
            "maxretries" => &mut p.maxretries,
            "retrytime" => &mut p.retrytime,
            "url" => &mut p.url,
            _ => continue,
        };
        match slot {
            Some(old) if *old != v => {
                return Err(SpoknError::Invalid(format!("{k} given twice")));
            }
            _ => *slot = Some(v.into_owned()),
        }
    }
    Ok(p)
}

/// An integer parameter within `range`, or `default` when absent.
fn int(
    name: &str,
    v: &Option<String>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, SpoknError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(SpoknError::Invalid(format!(
                "{name} must be {} to {}, not {s:?}",
                range.start(),
                range.end()
            ))),
        },
    }
}

/// What a party is shown: `cid` if the partner set one, else the other party,
/// unless the other party is a Spokn ID and this one a phone, which is shown the
/// access number (a Spokn ID cannot be propagated to a regular phone).
pub fn caller_id(
    this: &Address,
    other: &Address,
    cid: Option<&Address>,
    access: Option<&crate::core::phone::E164>,
) -> Option<String> {
    match (cid, this, other) {
        (Some(c), _, _) => Some(c.as_str().to_string()),
        (None, Address::Phone(_), Address::Local(_)) => access.map(|a| a.as_str().to_string()),
        (None, _, o) => Some(o.as_str().to_string()),
    }
}

/// A caller ID the partner set for `party`: a phone number, or a Spokn ID when
/// `party` is one too.
fn cid_param(
    name: &str,
    v: &Option<String>,
    party: &Address,
) -> Result<Option<Address>, SpoknError> {
    let Some(s) = v.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match Address::parse(s) {
        Ok(Address::Local(_)) if !party.is_local() => Err(SpoknError::Invalid(format!(
            "{name} may be a Spokn ID only when the party is one"
        ))),
        Ok(a) => Ok(Some(a)),
        Err(e) => Err(SpoknError::Invalid(format!("{name} {e}"))),
    }
}

/// A validated request.
struct Validated {
    plan: CallPlan,
    token: Option<String>,
    callback_url: Option<String>,
}

fn validate(p: &Params, partner: &Partner, cfg: &config::Config) -> Result<Validated, SpoknError> {
    let aparty = p.aparty.as_deref().unwrap_or("");
    let a = Address::parse(aparty).map_err(|e| SpoknError::BadAparty(format!("{aparty:?} {e}")))?;
    let bparty = p.bparty.as_deref().unwrap_or("");
    let b = Address::parse(bparty).map_err(|e| SpoknError::BadBparty(format!("{bparty:?} {e}")))?;
    if !partner.enterprise {
        for (name, v) in [
            ("apartycid", &p.apartycid),
            ("bpartycid", &p.bpartycid),
            ("url", &p.url),
        ] {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(SpoknError::Invalid(format!(
                    "{name} may be set by enterprise partners only"
                )));
            }
        }
    }
    let acid = cid_param("apartycid", &p.apartycid, &a)?;
    let bcid = cid_param("bpartycid", &p.bpartycid, &b)?;
    let minutes = int("duration", &p.duration, 1..=MAX_DURATION_MIN)?;
    let retries = int("maxretries", &p.maxretries, 0..=u64::from(MAX_RETRIES))?.unwrap_or(0);
    let retry_time = int("retrytime", &p.retrytime, 0..=MAX_RETRY_TIME_S)?.unwrap_or(0);
    let token = p.token.clone().filter(|t| !t.is_empty());
    if token
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TOKEN)
    {
        return Err(SpoknError::TokenTooLong);
    }
    let callback_url = match p.url.as_deref().filter(|s| !s.is_empty()) {
        None => partner.callback_url.as_ref().map(|u| u.to_string()),
        Some(u) => Some(
            config::check_callback_url(u, &partner.callback_hosts)
                .map_err(|e| SpoknError::Invalid(format!("url: {e}")))?
                .to_string(),
        ),
    };
    let access = cfg.spokn.access_number.as_ref();
    let a_cid = caller_id(&a, &b, acid.as_ref(), access);
    let b_cid = caller_id(&b, &a, bcid.as_ref(), access);
    let cap = Duration::from_secs(u64::from(partner.time_limit));
    let time_limit = minutes.map_or(cap, |m| Duration::from_secs(m * 60).min(cap));
    let ring_timeout = cfg.calls.ring_timeout;
    let plan = CallPlan {
        a: SidePlan {
            participants: vec![Participant {
                number: a,
                caller_id: None,
                retries: u8::try_from(retries).unwrap_or(MAX_RETRIES),
            }],
            strategy: Strategy::Sequential,
            caller_id: a_cid,
            ring_timeout,
            retry_delay: Duration::from_secs(retry_time),
            start: 0,
        },
        b: SidePlan {
            ring_timeout,
            ..SidePlan::single(b, b_cid)
        },
        time_limit,
        record: false,
    };
    Ok(Validated {
        plan,
        token,
        callback_url,
    })
}

/// Records a request c2cd refuses itself, then answers it.
async fn reject(app: &App, rec: calls::NewCall, e: SpoknError) -> Resp {
    reject_with(app, rec, e, None).await
}

/// Records a refusal, with what the log and the row say beyond the error, then
/// answers it.
async fn reject_with(app: &App, rec: calls::NewCall, e: SpoknError, note: Option<String>) -> Resp {
    let id = rec.id;
    let mut refusal = Answer::refused(&e);
    if let Some(n) = note {
        refusal.detail = Some(format!("{e}: {n}"));
    }
    match record_refusal(app, rec, refusal).await {
        Ok(()) => error_response(id, &e),
        Err(se) => store_failure(id, &se),
    }
}

fn store_failure(id: CallId, e: &StoreError) -> Resp {
    log::error!("call {id}: spokn request not recorded: {e}");
    match e {
        StoreError::Busy => error_response(id, &SpoknError::Overloaded),
        _ => error_response(id, &SpoknError::Internal("database error".into())),
    }
}

/// Anything under `/c2c/` that is not `POST /c2c/1.0/call`.
pub fn not_found() -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(answer_body(100))));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(XML));
    r
}

/// `POST /c2c/1.0/call`.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Resp {
    let app = &*app;
    if req.method() != Method::POST {
        return not_found();
    }
    let rt = app.runtime();
    let limits = &rt.config.server;
    let mut rec = calls::NewCall::received(
        "spokn",
        remote,
        req.method().as_str(),
        req.uri().query().unwrap_or(""),
    );
    let is_form = content_type_is(&req, "application/x-www-form-urlencoded");
    let auth = req.headers().get(AUTHORIZATION).cloned();
    match read_body(req, limits.max_body_bytes, limits.body_read_timeout).await {
        Ok(b) => rec.received_body = b.to_vec(),
        Err(BodyError::TooLarge) => {
            return reject(
                app,
                rec,
                SpoknError::Invalid("body larger than server.max_body_bytes".into()),
            )
            .await
        }
        Err(BodyError::Timeout) => {
            return reject(
                app,
                rec,
                SpoknError::Invalid("body not received in time".into()),
            )
            .await
        }
        Err(BodyError::Io(e)) => {
            return reject(app, rec, SpoknError::Invalid(format!("body: {e}"))).await
        }
    }
    let partner = match basic_partner(app, &rt.config, remote.ip(), auth.as_ref(), Dialect::Spokn) {
        Ok(p) => p,
        Err(e) => {
            // Who tried is kept for the operator; the password never is.
            rec.auth_ok = Some(false);
            let user = basic_credentials(auth.as_ref()).map(|(u, _)| format!("username {u:?}"));
            let why = match e {
                BasicError::Unauthorized => "no or wrong credentials",
                BasicError::Forbidden => "the partner is disabled or may not use spokn",
                BasicError::Locked(l) => {
                    let id = rec.id;
                    let refusal = Answer::stopped(&Stop::locked(&l));
                    let e = SpoknError::Unauthorized;
                    let answer = || error_response(id, &e);
                    return refuse_locked(app, rec, refusal, &l, answer, |se| {
                        store_failure(id, se)
                    })
                    .await;
                }
            };
            let note = format!("{why} ({})", user.as_deref().unwrap_or("no username"));
            return reject_with(app, rec, SpoknError::Unauthorized, Some(note)).await;
        }
    };
    rec.partner_id = Some(partner.id.clone());
    rec.auth_ok = Some(true);
    if !is_form {
        return reject(app, rec, SpoknError::UnsupportedMediaType).await;
    }
    let params = match parse_params(&rec.received_body) {
        Ok(p) => p,
        Err(e) => return reject(app, rec, e).await,
    };
    let v = match validate(&params, partner, &rt.config) {
        Ok(v) => v,
        Err(e) => return reject(app, rec, e).await,
    };
    let plan = Arc::new(v.plan);
    let Some(o) = Originate::for_plan(rec.id, plan.clone(), partner) else {
        let e = SpoknError::Internal("a side without participants".into());
        return reject(app, rec, e).await;
    };
    rec.set_plan(&plan);
    rec.memo = v.token;
    let rates =
        [&rec.a_number, &rec.b_number].map(|n| partner.rate_for(n.as_deref().unwrap_or_default()));
    rec.dialect_data = Some(json!({
        "userid": partner.username,
        // Ten-thousandths of a dollar a minute, per leg.
        "rate": rates.map(|r| r.0),
        // The balance its cost is taken from when it ends.
        "debit": partner.balance.then(|| partner.balance_account()),
    }));
    if partner.balance {
        // Both legs are billed: the balance must buy a minute of the call.
        let per_minute = rates[0].checked_add(rates[1]).unwrap_or(Money(i64::MAX));
        let account = partner.balance_account();
        let held = app
            .store
            .read(move |c| crate::store::cloud9::balance(c, &account))
            .await;
        match held {
            Err(e) => {
                let e = SpoknError::CreditsUnavailable(format!("the balance cannot be read: {e}"));
                return reject(app, rec, e).await;
            }
            Ok(b) if b.minutes_at(per_minute).is_some_and(|m| m < 1) => {
                let e = SpoknError::NoCredits(format!(
                    "balance {b} buys no minute at {} cents a minute",
                    in_cents(per_minute)
                ));
                return reject(app, rec, e).await;
            }
            Ok(_) => {}
        }
    }
    let route = match usable(&rt.providers.route(&partner.route), &plan) {
        Ok(r) => r,
        Err(why) => {
            let local = |s: &SidePlan| s.participants.iter().any(|p| p.number.is_local());
            let e = match (local(&plan.a), local(&plan.b)) {
                (true, _) => SpoknError::AUnsupported(why),
                (_, true) => SpoknError::BUnsupported(why),
                _ => SpoknError::Invalid(why),
            };
            return reject(app, rec, e).await;
        }
    };
    rec.callback_url = v.callback_url;
    let id = rec.id;
    let ask = Ask::new(&rt.config, partner, rec.at);
    let placed = place(app, rec, &route, &o, ask, Answer::stopped, |r| {
        answer_of(id, r)
    });
    let (answer, stop) = match placed.await {
        Ok(placed) => placed,
        Err(e) => return store_failure(id, &e),
    };
    match &answer.error {
        None => log::info!(
            "call {id}: spokn partner {:?}: {}",
            partner.id,
            answer.event.kind()
        ),
        Some(e) => log::warn!("call {id}: spokn partner {:?}: {e}", partner.id),
    }
    let shown = stop.as_ref().and_then(|s| s.replay_of).unwrap_or(id);
    let mut r = match &answer.error {
        None => respond(shown, StatusCode::OK, answer.body),
        Some(e) => error_response(id, e),
    };
    stop_headers(&mut r, stop.as_ref());
    r
}

/// What the partner is answered, and what the call records of it.
#[derive(Clone)]
struct Answer {
    event: Event,
    error: Option<SpoknError>,
    detail: Option<String>,
    body: Bytes,
}

impl Answer {
    /// The answer to a request the guard rails stopped, in Spokn's codes: a
    /// replay is successful; the A number's limit is 106 and a busy B 107
    /// (destinations not served now); the partner's own limits are 500.
    fn stopped(s: &Stop) -> Answer {
        let why = s.detail.clone();
        let e = match s.rule {
            // Deferred to the next opening, or queued for a busy B: taken, as
            // Spokn takes any call.
            _ if s.deferred_to.is_some() => {
                return Answer {
                    event: Event::Deferred,
                    error: None,
                    detail: Some(why),
                    body: Bytes::from(answer_body(200)),
                }
            }
            Rule::Duplicate => {
                return Answer {
                    event: Event::Rejected,
                    error: None,
                    detail: Some(why),
                    body: Bytes::from(answer_body(200)),
                }
            }
            // Spokn's codes have no "too many": the lock is an authentication
            // failure, with Retry-After.
            Rule::Disabled | Rule::AuthLockout => SpoknError::Unauthorized,
            Rule::CallerId(_) => SpoknError::Invalid(why),
            Rule::Invalid(Side::A) => SpoknError::BadAparty(why),
            Rule::Invalid(Side::B) => SpoknError::BadBparty(why),
            Rule::Blocked(Side::A) => SpoknError::AUnsupported(why),
            Rule::Blocked(Side::B) => SpoknError::BUnsupported(why),
            Rule::NumberLimit | Rule::Closed => SpoknError::AUnsupported(why),
            Rule::AgentBusy => SpoknError::BUnsupported(why),
            Rule::PartnerRate | Rule::PartnerBusy | Rule::ProviderBusy => SpoknError::Overloaded,
            // Spokn sends no Idempotency-Key.
            Rule::KeyInUse | Rule::KeyReused | Rule::KeyReplay => SpoknError::Internal(why),
        };
        Answer {
            detail: Some(s.detail.clone()),
            ..Answer::refused(&e)
        }
    }

    fn refused(e: &SpoknError) -> Answer {
        Answer {
            event: Event::Rejected,
            error: Some(e.clone()),
            detail: Some(e.to_string()),
            body: Bytes::from(answer_body(e.code())),
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
        let (status, code) = match &self.error {
            Some(e) => (e.status().as_u16(), e.code()),
            None => (200, 200),
        };
        calls::Answered {
            status,
            code: Some(code_str(code)),
            body: &self.body,
            error: self.detail.as_deref(),
        }
    }
}

/// Return codes as the `result_code` column keeps them.
fn code_str(code: u16) -> &'static str {
    match code {
        100 => "100",
        101 => "101",
        102 => "102",
        103 => "103",
        104 => "104",
        105 => "105",
        106 => "106",
        107 => "107",
        108 => "108",
        109 => "109",
        200 => "200",
        _ => "500",
    }
}

fn answer_of(id: CallId, r: Outcome) -> (Answer, Option<FollowUp>) {
    let failed = |detail: String| Answer {
        event: Event::Failed,
        error: Some(SpoknError::Internal(detail.clone())),
        detail: Some(detail),
        body: Bytes::from(answer_body(500)),
    };
    match r {
        Ok((reply, follow)) if reply.event == Event::Failed => {
            let said =
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]).into_owned();
            log::debug!("call {id}: provider refused: HTTP {}", reply.status);
            (
                failed(format!(
                    "the provider answered HTTP {}: {said}",
                    reply.status
                )),
                follow,
            )
        }
        Ok((reply, follow)) => (
            Answer {
                event: reply.event,
                error: None,
                detail: None,
                body: Bytes::from(answer_body(200)),
            },
            follow,
        ),
        Err(pe) => {
            let detail = provider_detail(&pe);
            // A refusal about a party is told as Spokn tells it; any other is
            // c2cd's problem, not the partner's.
            let e = match &pe {
                ProviderError::Refused(r) => match r.about {
                    About::Number(Side::A) => SpoknError::BadAparty(r.to_string()),
                    About::Number(Side::B) => SpoknError::BadBparty(r.to_string()),
                    About::Destination(Side::A) => SpoknError::AUnsupported(r.to_string()),
                    About::Destination(Side::B) => SpoknError::BUnsupported(r.to_string()),
                    _ => return (failed(detail), None),
                },
                _ => return (failed(detail), None),
            };
            let answer = Answer {
                event: Event::Failed,
                body: Bytes::from(answer_body(e.code())),
                error: Some(e),
                detail: Some(detail),
            };
            (answer, None)
        }
    }
}

fn provider_detail(e: &ProviderError) -> String {
    format!("the click-to-call server: {e}")
}

/// Spokn's callbacks: when the call ends, one form POST per leg dialled, aparty's
/// first (leg 1), then bparty's (leg 2).
pub struct SpoknFormat;

/// A leg's status in a Spokn callback, from its state and Q.850 cause.
pub fn status(leg: &LegView) -> u8 {
    match (leg.state, leg.cause) {
        // Closed by c2cd because no end was heard: not a success.
        (_, Some(102)) => 6,
        (LegState::HungUp, _) => 0,
        (LegState::Busy, _) => 1,
        (LegState::NoAnswer, _) => 2,
        (LegState::Cancelled, _) => 4,
        (LegState::Failed, Some(1 | 28)) => 5,
        (LegState::Failed, Some(34 | 38 | 41 | 42)) => 3,
        _ => 6,
    }
}

/// A number of cents as Spokn writes it: no trailing zeros, at most 4 decimals.
/// What a leg answered for `seconds` costs at `rate`: per started minute.
fn cost(rate: Money, seconds: i64) -> Money {
    Money(rate.0.saturating_mul((seconds.max(0) + 59) / 60))
}

/// What a call of a partner whose credit c2cd holds costs it, once ended:
/// the balance account and both legs' cost, from its `dialect_data` and legs.
pub fn charge(data: &serde_json::Value, legs: &[LegView]) -> Option<(String, Money)> {
    let account = data["debit"].as_str()?;
    let total = [Side::A, Side::B]
        .into_iter()
        .enumerate()
        .filter_map(|(i, side)| {
            let leg = super::reported_leg(legs, side)?;
            Some(cost(
                Money(data["rate"][i].as_i64().unwrap_or(0)),
                leg.seconds(),
            ))
        })
        .fold(Money::ZERO, |a, c| {
            a.checked_add(c).unwrap_or(Money(i64::MAX))
        });
    Some((account.to_string(), total))
}

/// An amount in US cents, as few decimals as it needs: `150` (ten-thousandths
/// of a dollar) is `1.5`.
fn in_cents(m: Money) -> String {
    let sign = if m.0 < 0 { "-" } else { "" };
    let (whole, frac) = (m.0.abs() / 100, m.0.abs() % 100);
    match frac {
        0 => format!("{sign}{whole}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{}", f / 10),
        f => format!("{sign}{whole}.{f:02}"),
    }
}

impl CallbackFormat for SpoknFormat {
    fn name(&self) -> &'static str {
        "spokn"
    }

    fn format(&self, n: &Notice) -> Vec<Payload> {
        if !n.state.is_terminal() || n.legs.is_empty() {
            return Vec::new();
        }
        let data = n.data;
        let userid = data.and_then(|d| d["userid"].as_str()).unwrap_or_default();
        let mut out = Vec::new();
        for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
            let Some(leg) = super::reported_leg(n.legs, side) else {
                continue;
            };
            let duration = leg.seconds();
            let rate = Money(data.and_then(|d| d["rate"][i].as_i64()).unwrap_or(0));
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("userid", userid)
                .append_pair("aparty", n.numbers[0].unwrap_or_default())
                .append_pair("bparty", n.numbers[1].unwrap_or_default())
                .append_pair("leg", &(i + 1).to_string())
                .append_pair("start", &format_ms(leg.created_at))
                .append_pair("duration", &duration.to_string())
                .append_pair("token", n.memo.unwrap_or_default())
                .append_pair("rate", &in_cents(rate))
                .append_pair("cost", &in_cents(cost(rate, duration)))
                .append_pair("status", &status(leg).to_string())
                .finish();
            out.push(Payload::new(
                "application/x-www-form-urlencoded",
                body.into_bytes(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::phone::E164;

    #[test]
    fn the_answer_is_the_seeds_xml() {
        assert_eq!(
            answer_body(200),
            "<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>200</code>\n    <desc>Request Successful</desc>\n  </c2c>\n</spokn>\n"
        );
    }

    #[test]
    fn caller_ids_follow_the_seeds_four_scenarios() {
        let phone = |s: &str| Address::parse(s).unwrap();
        let access = E164::from_canonical("+18005550100").unwrap();
        let (a, b, id) = (
            phone("+18474255380"),
            phone("+14155550123"),
            phone("1234567"),
        );
        // PSTN to PSTN: each sees the other.
        assert_eq!(
            caller_id(&a, &b, None, Some(&access)).as_deref(),
            Some("+14155550123")
        );
        assert_eq!(
            caller_id(&b, &a, None, Some(&access)).as_deref(),
            Some("+18474255380")
        );
        // aparty a Spokn ID: it sees bparty; bparty sees the access number.
        assert_eq!(
            caller_id(&id, &b, None, Some(&access)).as_deref(),
            Some("+14155550123")
        );
        assert_eq!(
            caller_id(&b, &id, None, Some(&access)).as_deref(),
            Some("+18005550100")
        );
        // bpartycid set, with aparty a phone or a Spokn ID: bparty sees it.
        let cid = phone("+16045550000");
        assert_eq!(
            caller_id(&b, &a, Some(&cid), Some(&access)).as_deref(),
            Some("+16045550000")
        );
        assert_eq!(
            caller_id(&b, &id, Some(&cid), Some(&access)).as_deref(),
            Some("+16045550000")
        );
        // Without an access number such a phone is shown nothing.
        assert_eq!(caller_id(&b, &id, None, None), None);
    }

    #[test]
    fn leg_outcomes_map_to_the_seeds_statuses() {
        let leg = |state, cause| LegView {
            side: Side::A,
            attempt: 1,
            number: None,
            state,
            cause: Some(cause),
            created_at: 0,
            answered_at: None,
            ended_at: None,
        };
        assert_eq!(status(&leg(LegState::HungUp, 16)), 0);
        assert_eq!(status(&leg(LegState::Busy, 17)), 1);
        assert_eq!(status(&leg(LegState::NoAnswer, 19)), 2);
        assert_eq!(status(&leg(LegState::Failed, 34)), 3);
        assert_eq!(status(&leg(LegState::Cancelled, 16)), 4);
        assert_eq!(status(&leg(LegState::Failed, 1)), 5);
        assert_eq!(status(&leg(LegState::Failed, 127)), 6);
        assert_eq!(status(&leg(LegState::HungUp, 102)), 6);
        assert_eq!(in_cents(Money(450)), "4.5");
        assert_eq!(in_cents(Money(30)), "0.3");
        assert_eq!(in_cents(Money(200)), "2");
        assert_eq!(in_cents(Money(225)), "2.25");
    }

    #[test]
    fn every_code_has_the_seeds_text_and_a_status() {
        for (e, code, status) in [
            (SpoknError::NotFound, 100, 404),
            (SpoknError::Unauthorized, 101, 401),
            (SpoknError::Invalid(String::new()), 102, 200),
            (SpoknError::UnsupportedMediaType, 102, 415),
            (SpoknError::BadAparty(String::new()), 103, 200),
            (SpoknError::BadBparty(String::new()), 104, 200),
            (SpoknError::AUnsupported(String::new()), 106, 200),
            (SpoknError::BUnsupported(String::new()), 107, 200),
            (SpoknError::TokenTooLong, 109, 200),
            (SpoknError::Internal(String::new()), 500, 500),
        ] {
            assert_eq!((e.code(), e.status().as_u16()), (code, status), "{e:?}");
            assert_ne!(desc(code), "", "{code}");
        }
    }
}
