//! The XIP partner API (seed 000): `GET` or `POST /request/call.php` with
//! PartnerID, Requestor, Fulfillment and Auth = MD5(secret + PartnerID + Requestor
//! + Fulfillment).
//!
//! A known partner's request always goes to its click-to-call server, with Auth
//! `BadIncomingAuth` when the partner's Auth does not match, and the server's
//! status and body go back verbatim: the vendor always sees the same interface.
//! Requests c2cd cannot pass on (unknown partner, malformed input, limits, an
//! unreachable server) are answered by c2cd itself with a result code from the
//! table in [`XipError`], in the same `Result=…&Message=…&CallID=…` form the
//! simulator answers with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::core::call::{Event, Side};
use crate::core::phone::{last_chars, E164};
use crate::core::plan::CallPlan;
use crate::core::{format_ms, hex_digest_eq, md5_hex, CallId};
use crate::http::{read_body, BodyError, Resp};
use crate::provider::{About, Originate, ProviderError};
use crate::store::{calls, StoreError};

use super::{record_refusal, stop_headers, Recorded, CALL_ID_HEADER};
use crate::guard::{Ask, Rule, Stop};

/// Why c2cd answered a XIP request itself. Each has a stable result code and
/// HTTP status; the codes are documented in the README.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XipError {
    /// The vendor's Auth did not match and no provider of the route can be
    /// told so: c2cd forces the failure the seed wants itself.
    #[error("BadIncomingAuth")]
    BadAuth,
    #[error("Unknown or disabled PartnerID")]
    UnknownPartner,
    #[error("Missing parameter {0}")]
    MissingParameter(&'static str),
    #[error("Invalid {param}: {why}")]
    InvalidNumber { param: &'static str, why: String },
    #[error("Malformed request: {0}")]
    Malformed(String),
    #[error("Method not allowed: use GET or POST")]
    MethodNotAllowed,
    #[error("Unsupported Content-Type: send application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("Request body too large")]
    TooLarge,
    #[error("Request body not received in time")]
    Timeout,
    #[error("Click-to-call server unreachable")]
    UpstreamUnreachable,
    #[error("Click-to-call server did not answer in time")]
    UpstreamTimeout,
    #[error("Click-to-call server gave an unusable answer")]
    UpstreamBadResponse,
    #[error("Click-to-call server refused the call")]
    UpstreamRefused,
    // The entry, its reason and its list stay in the record: not told.
    #[error("{param} is on the do-not-call list")]
    Blocked { param: &'static str },
    #[error("Caller ID not allowed: {0}")]
    CallerId(String),
    #[error("No channel free, retry later")]
    NoChannel,
    #[error("Outside the partner's hours: {0}")]
    Closed(String),
    #[error("Too many calls to the Requestor: {0}")]
    NumberLimit(String),
    #[error("Call rate exceeded: {0}")]
    PartnerRate(String),
    #[error("Too many calls in progress: {0}")]
    PartnerBusy(String),
    #[error("Fulfillment busy in another call: {0}")]
    FulfillmentBusy(String),
    #[error("Too many failed authentications: {0}")]
    AuthLockout(String),
    #[error("Busy, retry later")]
    Overloaded,
    #[error("Internal error")]
    Internal,
}

impl XipError {
    /// The `Result` code; 0 and 100 are the simulator's accepted and BadIncomingAuth.
    pub fn code(&self) -> u16 {
        match self {
            XipError::BadAuth => 100,
            XipError::UnknownPartner => 101,
            XipError::MissingParameter(_) => 102,
            XipError::InvalidNumber { .. } => 103,
            XipError::Malformed(_) => 104,
            XipError::MethodNotAllowed => 105,
            XipError::UnsupportedMediaType => 106,
            XipError::TooLarge => 107,
            XipError::Timeout => 108,
            XipError::UpstreamUnreachable => 110,
            XipError::UpstreamTimeout => 111,
            XipError::UpstreamBadResponse => 112,
            XipError::UpstreamRefused => 113,
            XipError::Blocked { .. } => 130,
            XipError::Closed(_) => 135,
            XipError::NoChannel => 136,
            XipError::CallerId(_) => 137,
            XipError::NumberLimit(_) => 131,
            XipError::PartnerRate(_) => 132,
            XipError::PartnerBusy(_) => 133,
            XipError::FulfillmentBusy(_) => 134,
            XipError::AuthLockout(_) => 138,
            XipError::Overloaded => 120,
            XipError::Internal => 121,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            XipError::BadAuth
            | XipError::UnknownPartner
            | XipError::Blocked { .. }
            | XipError::Closed(_)
            | XipError::CallerId(_) => StatusCode::FORBIDDEN,
            XipError::MissingParameter(_)
            | XipError::InvalidNumber { .. }
            | XipError::Malformed(_) => StatusCode::BAD_REQUEST,
            XipError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            XipError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            XipError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            XipError::Timeout => StatusCode::REQUEST_TIMEOUT,
            XipError::UpstreamUnreachable
            | XipError::UpstreamBadResponse
            | XipError::UpstreamRefused => StatusCode::BAD_GATEWAY,
            XipError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            XipError::NumberLimit(_) | XipError::PartnerRate(_) | XipError::AuthLockout(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            XipError::FulfillmentBusy(_) => StatusCode::CONFLICT,
            XipError::PartnerBusy(_) | XipError::NoChannel | XipError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            XipError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the vendor is told of a request the guard rails stopped; `None`
    /// for a replay, which is answered with the earlier call.
    fn from_stop(s: &Stop) -> Option<Self> {
        let why = s.detail.clone();
        Some(match s.rule {
            Rule::Duplicate => return None,
            Rule::Disabled => XipError::UnknownPartner,
            Rule::Invalid(side) => XipError::InvalidNumber {
                param: param(side),
                why,
            },
            Rule::Blocked(side) => XipError::Blocked { param: param(side) },
            Rule::Closed => XipError::Closed(why),
            Rule::ProviderBusy => XipError::NoChannel,
            Rule::CallerId(_) => XipError::CallerId(why),
            Rule::NumberLimit => XipError::NumberLimit(why),
            Rule::PartnerRate => XipError::PartnerRate(why),
            Rule::PartnerBusy => XipError::PartnerBusy(why),
            // XIP sends no Idempotency-Key.
            Rule::KeyInUse | Rule::KeyReused | Rule::KeyReplay => XipError::Internal,
            Rule::AgentBusy => XipError::FulfillmentBusy(why),
            Rule::AuthLockout => XipError::AuthLockout(why),
        })
    }

    fn from_provider(e: &ProviderError) -> Self {
        match e {
            ProviderError::Unreachable(_) => XipError::UpstreamUnreachable,
            ProviderError::Timeout(_) => XipError::UpstreamTimeout,
            ProviderError::BadResponse(_) => XipError::UpstreamBadResponse,
            // An upstream that speaks another dialect (Spokn, Airtel) refused:
            // the vendor is told in XIP, and about its number when it was that.
            ProviderError::Refused(r) => match r.about {
                About::Number(side) => XipError::InvalidNumber {
                    param: param(side),
                    why: "refused by the click-to-call server".into(),
                },
                _ => XipError::UpstreamRefused,
            },
        }
    }
}

/// The request parameter of a side.
fn param(side: Side) -> &'static str {
    match side {
        Side::A => "Requestor",
        Side::B => "Fulfillment",
    }
}

/// The body of an answer c2cd (or its simulator) gives: `Result=…&Message=…&CallID=…`.
pub fn result_body(code: u16, message: &str, call_id: Option<CallId>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("Result", &code.to_string());
    s.append_pair("Message", message);
    if let Some(id) = call_id {
        s.append_pair("CallID", &id.to_string());
    }
    s.finish()
}

/// The four parameters as received.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub partner_id: Option<String>,
    pub requestor: Option<String>,
    pub fulfillment: Option<String>,
    pub auth: Option<String>,
}

/// Reads the parameters from the query string and a form body. A parameter given
/// twice with different values is refused: which one the vendor meant is unknown.
pub fn parse_params(query: &str, form: &[u8]) -> Result<Params, XipError> {
    let mut p = Params::default();
    let pairs = form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(form));
    for (k, v) in pairs {
        let slot = match k.as_ref() {
            "PartnerID" => &mut p.partner_id,
            "Requestor" => &mut p.requestor,
            "Fulfillment" => &mut p.fulfillment,
            "Auth" => &mut p.auth,
            _ => continue,
        };
        match slot {
            Some(old) if *old != v => return Err(XipError::Malformed(format!("{k} given twice"))),
            Some(_) => {}
            None => *slot = Some(v.into_owned()),
        }
    }
    Ok(p)
}

pub fn number(param: &'static str, v: &Option<String>) -> Result<E164, XipError> {
    let v = v.as_deref().ok_or(XipError::MissingParameter(param))?;
    E164::from_digits(v).map_err(|e| XipError::InvalidNumber {
        param,
        why: e.to_string(),
    })
}

/// The Content-Type of c2cd's own answers.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// An answer with the call's id; `content_type` is passed on as given (an
/// upstream that sent none gets none added).
fn respond(id: CallId, status: StatusCode, content_type: Option<&str>, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(CONTENT_TYPE, ct);
    }
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        h.insert(CALL_ID_HEADER, v);
    }
    r
}

fn local_answer(id: CallId, e: &XipError) -> Resp {
    let mut r = respond(
        id,
        e.status(),
        Some(TEXT_PLAIN),
        Bytes::from(result_body(e.code(), &e.to_string(), Some(id))),
    );
    match e {
        XipError::MethodNotAllowed => {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
        }
        XipError::Overloaded => {
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    r
}

fn store_failure(id: CallId, e: &StoreError) -> Resp {
    let err = match e {
        StoreError::Busy => XipError::Overloaded,
        _ => XipError::Internal,
    };
    log::error!("call {id}: xip request not recorded: {e}");
    local_answer(id, &err)
}

/// Records a request c2cd refuses itself, then answers it.
async fn reject(app: &App, rec: calls::NewCall, e: XipError) -> Resp {
    let id = rec.id;
    match record_refusal(app, rec, Answer::local(id, &e, Event::Rejected)).await {
        Ok(()) => local_answer(id, &e),
        Err(se) => store_failure(id, &se),
    }
}

pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Resp {
    let app = &*app;
    let rt = app.runtime();
    let limits = &rt.config.server;
    let method = req.method().clone();
    let mut rec = calls::NewCall::received(
        "xip",
        remote,
        method.as_str(),
        req.uri().query().unwrap_or(""),
    );
    if method != Method::GET && method != Method::POST {
        return reject(app, rec, XipError::MethodNotAllowed).await;
    }
    let is_form = match req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => true,
        Some(ct) => ct.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        }),
    };
    if method == Method::POST {
        match read_body(req, limits.max_body_bytes, limits.body_read_timeout).await {
            Ok(b) => rec.received_body = b.to_vec(),
            Err(BodyError::TooLarge) => return reject(app, rec, XipError::TooLarge).await,
            Err(BodyError::Timeout) => return reject(app, rec, XipError::Timeout).await,
            Err(BodyError::Io(e)) => {
                return reject(app, rec, XipError::Malformed(format!("body: {e}"))).await
            }
        }
        if !is_form && !rec.received_body.is_empty() {
            return reject(app, rec, XipError::UnsupportedMediaType).await;
        }
    }

    let params = match parse_params(&rec.received_query, &rec.received_body) {
        Ok(p) => p,
        Err(e) => return reject(app, rec, e).await,
    };
    rec.partner_id = params.partner_id.clone();
    let Some(partner_id) = params.partner_id.clone() else {
        return reject(app, rec, XipError::MissingParameter("PartnerID")).await;
    };
    let a = match number("Requestor", &params.requestor) {
        Ok(n) => n,
        Err(e) => return reject(app, rec, e).await,
    };
    rec.a_number = Some(a.as_str().to_string());
    let b = match number("Fulfillment", &params.fulfillment) {
        Ok(n) => n,
        Err(e) => return reject(app, rec, e).await,
    };
    rec.b_number = Some(b.as_str().to_string());
    // What each side is shown: A sees the fulfilment number, B the requestor.
    rec.a_cid = Some(last_chars(b.digits(), 10).to_string());
    rec.b_cid = Some(last_chars(a.digits(), 10).to_string());

    // SECURITY: a source or partner with too many bad Auths is not even
    // passed upstream as BadIncomingAuth until its lock ends.
    let auth_limits = &rt.config.guard.auth;
    let named = rt.config.partner(&partner_id).map(|p| p.id.as_str());
    if let Err(l) = app.lockout.check(auth_limits, remote.ip(), named) {
        let e = XipError::AuthLockout(l.detail());
        let id = rec.id;
        let refusal = Answer::local(id, &e, Event::Rejected);
        let answer = || local_answer(id, &e);
        return super::refuse_locked(app, rec, refusal, &l, answer, |se| store_failure(id, se))
            .await;
    }
    let partner = rt
        .config
        .partner(&partner_id)
        .filter(|p| p.enabled && p.dialects.contains(&crate::config::Dialect::Xip));
    let Some(partner) = partner else {
        app.lockout.failed(auth_limits, remote.ip(), None);
        return reject(app, rec, XipError::UnknownPartner).await;
    };

    let expected = md5_hex(&[
        partner.secret.as_ref().map(|s| s.expose()).unwrap_or(""),
        &partner_id,
        a.digits(),
        b.digits(),
    ]);
    // SECURITY: constant-time, case-insensitive comparison of the vendor's Auth.
    let auth_ok =
        partner.secret.is_some() && hex_digest_eq(params.auth.as_deref().unwrap_or(""), &expected);
    rec.auth_ok = Some(auth_ok);
    if auth_ok {
        app.lockout.passed(remote.ip(), &partner.id);
    } else {
        app.lockout
            .failed(auth_limits, remote.ip(), Some(&partner.id));
    }

    let mut plan = CallPlan::simple(
        a.clone(),
        rec.a_cid.clone(),
        b.clone(),
        rec.b_cid.clone(),
        Duration::from_secs(u64::from(partner.time_limit)),
    );
    plan.a.ring_timeout = rt.config.calls.ring_timeout;
    plan.b.ring_timeout = rt.config.calls.ring_timeout;
    let o = Originate {
        plan: Arc::new(plan),
        call_id: rec.id,
        requestor_phone: a.digits().to_string(),
        requestor_cid: rec.a_cid.clone().unwrap_or_default(),
        destination_phone: b.digits().to_string(),
        destination_cid: rec.b_cid.clone().unwrap_or_default(),
        prompt_set: partner.prompt_set.clone(),
        time_limit: partner.time_limit,
        partner_id: partner_id.clone(),
        source: partner.source.clone(),
        incoming_auth_ok: auth_ok,
    };
    rec.plan = serde_json::to_string(&*o.plan).ok();
    rec.callback_url = partner.callback_url.as_ref().map(|u| u.to_string());

    let id = rec.id;
    let mut ask = Ask::new(&rt.config, partner, rec.at);
    // A request with a bad Auth goes upstream as BadIncomingAuth, as the seed
    // says, past the guard rails: a stranger must not spend the partner's
    // limits, learn an earlier call's id or whether a number is blocked.
    ask.trusted = auth_ok;
    let mut route = match super::usable(&rt.providers.route(&partner.route), &o.plan) {
        Ok(r) => r,
        Err(why) => {
            log::error!("call {id}: xip partner {partner_id:?}: {why}");
            return reject(app, rec, XipError::Internal).await;
        }
    };
    if !auth_ok {
        // SECURITY: a Spokn, Airtel or AMI provider has no BadIncomingAuth:
        // asked, it would place a stranger's call, unguarded. Only those that
        // force the failure are asked; with none, c2cd answers as they would.
        route.retain(|r| r.provider.takes_bad_auth());
        if route.is_empty() {
            log::warn!("call {id}: xip partner {partner_id:?} sent a bad Auth from {remote}; refused here, no provider of its route takes BadIncomingAuth");
            return reject(app, rec, XipError::BadAuth).await;
        }
    }
    let stopped = move |s: &Stop| Answer::stopped(id, s);
    let placed = super::place(app, rec, &route, &o, ask, stopped, |r| answer_of(id, r));
    if !auth_ok {
        log::warn!("call {id}: xip partner {partner_id:?} sent a bad Auth from {remote}; passing BadIncomingAuth upstream");
    }
    let (answer, stop) = match placed.await {
        Ok(placed) => placed,
        Err(e) => return store_failure(id, &e),
    };
    match &answer.detail {
        None => log::info!(
            "call {id}: xip partner {partner_id:?}: HTTP {}",
            answer.status
        ),
        Some(d) => log::warn!("call {id}: xip partner {partner_id:?}: {d}",),
    }
    let shown = stop.as_ref().and_then(|s| s.replay_of).unwrap_or(id);
    let mut r = respond(
        shown,
        answer.status,
        answer.content_type.as_deref(),
        answer.body,
    );
    stop_headers(&mut r, stop.as_ref());
    r
}

/// What the partner is answered after the provider was asked, and what is recorded of it.
#[derive(Clone)]
struct Answer {
    event: Event,
    status: StatusCode,
    /// c2cd's own result code, when c2cd answered for an unreachable provider.
    code: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    /// Why the call failed, when the provider could not be asked.
    detail: Option<String>,
}

impl Answer {
    /// The answer to a request the guard rails stopped: a replay is answered
    /// as accepted, with the earlier call's id.
    fn stopped(id: CallId, s: &Stop) -> Answer {
        if let Some(at) = s.deferred_to {
            let message = match s.queue_until {
                Some(until) => format!(
                    "Queued: the Fulfillment is busy; it is called once free, until {}",
                    format_ms(until)
                ),
                None => format!("Deferred to the partner's next opening, {}", format_ms(at)),
            };
            return Answer {
                event: Event::Deferred,
                status: StatusCode::OK,
                code: Some("0".into()),
                content_type: Some(TEXT_PLAIN.to_string()),
                body: Bytes::from(result_body(0, &message, Some(id))),
                detail: Some(s.detail.clone()),
            };
        }
        match (XipError::from_stop(s), s.replay_of) {
            (Some(e), _) => Answer {
                detail: Some(s.detail.clone()),
                ..Answer::local(id, &e, Event::Rejected)
            },
            (None, of) => Answer {
                event: Event::Rejected,
                status: StatusCode::OK,
                code: Some("0".into()),
                content_type: Some(TEXT_PLAIN.to_string()),
                body: Bytes::from(result_body(
                    0,
                    "Replay of an earlier request",
                    of.or(Some(id)),
                )),
                detail: Some(s.detail.clone()),
            },
        }
    }

    /// c2cd's own answer for `e`, moving the call by `event`.
    fn local(id: CallId, e: &XipError, event: Event) -> Answer {
        Answer {
            event,
            status: e.status(),
            code: Some(e.code().to_string()),
            content_type: Some(TEXT_PLAIN.to_string()),
            body: Bytes::from(result_body(e.code(), &e.to_string(), Some(id))),
            detail: Some(e.to_string()),
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
            status: self.status.as_u16(),
            code: self.code.as_deref(),
            body: &self.body,
            error: self.detail.as_deref(),
        }
    }
}

fn answer_of(
    id: CallId,
    r: Result<(crate::provider::Reply, Option<crate::provider::FollowUp>), ProviderError>,
) -> (Answer, Option<crate::provider::FollowUp>) {
    match r {
        Ok((reply, follow)) => (
            Answer {
                event: reply.event,
                status: StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY),
                code: None,
                content_type: reply.content_type,
                body: reply.body,
                detail: None,
            },
            follow,
        ),
        Err(pe) => {
            let mut a = Answer::local(id, &XipError::from_provider(&pe), Event::Failed);
            a.detail = Some(pe.to_string());
            (a, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_from_query_and_form() {
        let p = parse_params(
            "PartnerID=102821&Requestor=16045551234",
            b"Fulfillment=16045550000&Auth=ABC",
        )
        .unwrap();
        assert_eq!(p.partner_id.as_deref(), Some("102821"));
        assert_eq!(p.fulfillment.as_deref(), Some("16045550000"));
        assert_eq!(p.auth.as_deref(), Some("ABC"));
    }

    #[test]
    fn conflicting_duplicates_are_malformed() {
        let e = parse_params("Requestor=1&Requestor=2", b"").unwrap_err();
        assert_eq!(e.code(), 104);
        assert!(parse_params("Requestor=1", b"Requestor=1").is_ok());
    }

    #[test]
    fn result_body_is_form_encoded() {
        assert_eq!(
            result_body(101, "Unknown or disabled PartnerID", None),
            "Result=101&Message=Unknown+or+disabled+PartnerID"
        );
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let all = [
            XipError::UnknownPartner,
            XipError::MissingParameter("x"),
            XipError::InvalidNumber {
                param: "x",
                why: String::new(),
            },
            XipError::Malformed(String::new()),
            XipError::MethodNotAllowed,
            XipError::UnsupportedMediaType,
            XipError::TooLarge,
            XipError::Timeout,
            XipError::UpstreamUnreachable,
            XipError::UpstreamTimeout,
            XipError::UpstreamBadResponse,
            XipError::Overloaded,
            XipError::Internal,
        ];
        let mut codes: Vec<u16> = all.iter().map(XipError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|e| e.status().as_u16() >= 400));
    }
}
