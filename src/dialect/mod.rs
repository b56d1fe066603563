//! The front doors, one module per wire dialect. Each parses and authenticates
//! its wire format, records the request, hands it to the core and a provider, and
//! answers in its own format with its own error codes.
//!
//! | core   | xip (seed 000)                 | native (`/v1/calls`)      | spokn (seed 002)        | airtel (seed 001)                |
//! | ------ | ------------------------------ | ------------------------- | ----------------------- | -------------------------------- |
//! | A side | Requestor → RequestorPhone     | `a.participants[]`        | aparty (+ maxretries)   | `initiateCall_*` participants    |
//! | B side | Fulfillment → DestinationPhone | `b.participants[]`        | bparty                  | `addParticipant_*` participants  |
//! | A sees | RequestorCID (last 10 of B)    | `a.caller_id` (B's first) | apartycid (bparty)      | participant/component `callerId` |
//! | B sees | DestinationCID (last 10 of A)  | `b.caller_id` (A's first) | bpartycid (aparty, or the access number) | participant/component `callerId` |
//! | limit  | TimeLimit (s)                  | `time_limit` (s)          | duration (min)          | component `maxTime` (s)          |
//! | memo   | —                              | `reference`               | token                   | participantName                  |

pub mod airtel;
pub mod cloud9;
pub mod native;
pub mod roundtrip;
pub mod spokn;
pub mod xip;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use hyper::header::HeaderValue;

use crate::app::App;
use crate::config::{Config, Dialect, Partner};
use crate::core::call::{CallState, Event, LegState, Side};
use crate::core::plan::CallPlan;
use crate::core::{ct_eq, now_ms, CallId};
use crate::guard::{self, Ask, Stop};
use crate::lockout::Locked;
use crate::provider::health::Channel;
use crate::provider::{Events, FollowUp, Originate, ProviderError, Reply, Routed};
use crate::store::{calls, partners, StoreError};

/// The header every dialect answer carries: the call's id.
pub const CALL_ID_HEADER: &str = "c2c-call-id";

/// Why HTTP Basic credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicError {
    /// None sent, malformed, or wrong.
    Unauthorized,
    /// Right, but the partner is disabled or may not use this front door.
    Forbidden,
    /// Not looked at: too many failed authentications from the source or
    /// for the partner ([`crate::lockout`]).
    Locked(Locked),
}

/// The partner whose HTTP Basic credentials `header` carries, if it may use
/// `dialect` (any Basic-auth dialect when `None`). Each wrong password is
/// counted against `remote` and the partner it names.
pub fn basic_partner<'a>(
    app: &App,
    cfg: &'a Config,
    remote: IpAddr,
    header: Option<&HeaderValue>,
    dialect: impl Into<Option<Dialect>>,
) -> Result<&'a Partner, BasicError> {
    let dialect = dialect.into();
    basic_partner_where(app, cfg, remote, header, |p| match dialect {
        Some(d) => p.dialects.contains(&d),
        None => p.dialects.iter().any(|d| d.basic_auth()),
    })
}

/// The partner whose HTTP Basic credentials `header` carries, if `allowed`
/// lets it through this door. A source or partner that is locked out is
/// refused before the password is looked at; no credentials at all do not
/// count as a failure (clients send them after a 401).
pub fn basic_partner_where<'a>(
    app: &App,
    cfg: &'a Config,
    remote: IpAddr,
    header: Option<&HeaderValue>,
    allowed: impl Fn(&Partner) -> bool,
) -> Result<&'a Partner, BasicError> {
    let limits = &cfg.guard.auth;
    let Some((user, password)) = basic_credentials(header) else {
        app.lockout
            .check(limits, remote, None)
            .map_err(BasicError::Locked)?;
        return Err(BasicError::Unauthorized);
    };
    let partner = cfg
        .partners
        .iter()
        .find(|p| p.username.as_deref() == Some(user.as_str()));
    let named = partner.map(|p| p.id.as_str());
    app.lockout
        .check(limits, remote, named)
        .map_err(BasicError::Locked)?;
    let expected = partner
        .and_then(|p| p.password.as_ref())
        .map(|s| s.expose())
        .unwrap_or("\u{0}no partner has this username\u{0}");
    // SECURITY: constant-time comparison, made for unknown usernames too.
    let ok = ct_eq(password.as_bytes(), expected.as_bytes());
    match partner {
        Some(p) if ok && p.enabled && allowed(p) => {
            app.lockout.passed(remote, &p.id);
            Ok(p)
        }
        Some(_) if ok => Err(BasicError::Forbidden),
        _ => {
            app.lockout.failed(limits, remote, named);
            Err(BasicError::Unauthorized)
        }
    }
}

/// Records a request refused because its source or partner is locked out
/// (`calls.guard` = `auth_lockout`), then gives `answer`'s response with
/// `Retry-After`; `failed` answers when it could not be recorded.
pub async fn refuse_locked<A: Recorded>(
    app: &App,
    rec: calls::NewCall,
    refusal: A,
    locked: &Locked,
    answer: impl FnOnce() -> crate::http::Resp,
    failed: impl FnOnce(&StoreError) -> crate::http::Resp,
) -> crate::http::Resp {
    let stop = Stop::locked(locked);
    match record_stopped(app, rec, refusal, Some((stop.rule, None))).await {
        Ok(()) => {
            let mut r = answer();
            stop_headers(&mut r, Some(&stop));
            r
        }
        Err(e) => failed(&e),
    }
}

/// `Authorization: Basic base64(user:password)`, decoded.
pub fn basic_credentials(header: Option<&HeaderValue>) -> Option<(String, String)> {
    let v = header?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A dialect's answer to its partner, as the call records it.
pub trait Recorded: Clone + Send + Sync + 'static {
    /// The event the answer moves the call by (accepted, handed off, failed,
    /// or rejected for a refusal).
    fn event(&self) -> Event;
    /// Why the call was refused or failed, if it was.
    fn detail(&self) -> Option<&str>;
    fn answered(&self) -> calls::Answered<'_>;
}

/// Records a request the dialect refused itself, as rejected with `refusal`:
/// its row says nothing went to a provider. The caller then answers.
pub async fn record_refusal<A: Recorded>(
    app: &App,
    rec: calls::NewCall,
    refusal: A,
) -> Result<(), StoreError> {
    record_stopped(app, rec, refusal, None).await
}

/// [`record_refusal`], marking the row with the guard rule that stopped the
/// request (and the call a replay repeats).
pub async fn record_stopped<A: Recorded>(
    app: &App,
    mut rec: calls::NewCall,
    refusal: A,
    guard: Option<(guard::Rule, Option<CallId>)>,
) -> Result<(), StoreError> {
    if let Some((rule, _)) = guard {
        app.metrics.stop(rule.as_str());
    }
    log::info!(
        "call {}: {} request refused: {} (partner {:?}, from {:?})",
        rec.id,
        rec.dialect,
        refusal.detail().unwrap_or_default(),
        rec.partner_id,
        rec.remote_addr
    );
    rec.provider = None;
    rec.upstream_request = None;
    rec.callback_url = None;
    app.store
        .write(move |c| {
            let events = [(refusal.event(), refusal.detail())];
            calls::insert(c, &rec, &events, Some(refusal.answered()))?;
            match guard {
                Some((rule, of)) => calls::set_guard(c, rec.id, rule.as_str(), of),
                None => Ok(()),
            }
        })
        .await
}

/// The header a replay is answered with (with the earlier call's id in
/// [`CALL_ID_HEADER`]).
pub const REPLAY_HEADER: &str = "c2c-replay";

/// What every dialect's answer to a stopped request carries besides its body:
/// `Retry-After` when trying later may succeed, and the replay mark.
pub fn stop_headers(r: &mut crate::http::Resp, stop: Option<&Stop>) {
    let Some(s) = stop else { return };
    if s.deferred_to.is_some() {
        // Taken for later: nothing to retry.
        return;
    }
    let h = r.headers_mut();
    if let Some(v) = s
        .retry_after
        .and_then(|n| HeaderValue::from_str(&n.to_string()).ok())
    {
        h.insert(hyper::header::RETRY_AFTER, v);
    }
    if s.replay_of.is_some() {
        h.insert(REPLAY_HEADER, HeaderValue::from_static("true"));
    }
}

/// Whether a request's `Content-Type` is `mime` (parameters aside).
pub fn content_type_is(req: &hyper::Request<hyper::body::Incoming>, mime: &str) -> bool {
    req.headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime))
}

/// What the provider's answer (or failure) means for a dialect.
pub type Outcome = Result<(Reply, Option<FollowUp>), ProviderError>;

/// Why an outcome should go to the next provider of the route, and whether it
/// counts against the provider's breaker: the provider could not be reached
/// (the request never left), failed on its side (5xx), or refused for a reason
/// the next may not have (see [`crate::provider::About`]). A timeout or a
/// broken answer may hide a placed call: going on would ring A twice, so those
/// fail the call instead.
fn worth_failover(out: &Outcome) -> Option<(String, bool)> {
    match out {
        Err(e @ ProviderError::Unreachable(_)) => Some((e.to_string(), true)),
        Err(e @ ProviderError::Refused(r)) if r.about.fails_over() => {
            Some((e.to_string(), r.about.is_failure()))
        }
        Err(_) => None,
        Ok((reply, _)) if reply.event == Event::Failed && reply.status >= 500 => {
            Some((format!("HTTP {}", reply.status), true))
        }
        Ok(_) => None,
    }
}

/// The providers of `route` that can place `plan` now: available, breaker
/// allowing, not refusing the plan. The first refusal, if all refuse.
pub fn usable(route: &[Routed], plan: &crate::core::plan::CallPlan) -> Result<Vec<Routed>, String> {
    let placing: Vec<&Routed> = route
        .iter()
        .filter(|r| r.provider.refuses(plan).is_none())
        .collect();
    if placing.is_empty() {
        let why = route
            .first()
            .and_then(|r| r.provider.refuses(plan))
            .unwrap_or_else(|| "the partner's route names no provider".into());
        return Err(why);
    }
    Ok(placing
        .into_iter()
        .filter(|r| r.provider.available() && r.health.would_allow())
        .cloned()
        .collect())
}

/// Records the request `rec` (with what is sent upstream and its deadline) and
/// has the providers of `route` place the call `o`, in order: one that cannot
/// be reached or fails on its side passes the call to the next (a `failover`
/// event), and its breaker counts the failure. Then the call is followed.
/// Returns the dialect's answer, with the [`Stop`] when the guard rails
/// stopped the request (the partner disabled in the database, a replay, a
/// limit): it is then recorded as refused with `stopped`'s answer, and nothing
/// is dialled.
///
/// A provider that places real calls is asked only once the request is durable,
/// so a crash never leaves a placed call without a row. The simulator places
/// nothing real and answers at once: its answer is committed with the request,
/// one commit on the request path instead of two. The partner is checked against
/// the database in the same transaction that records the request.
pub async fn place<A: Recorded>(
    app: &App,
    mut rec: calls::NewCall,
    route: &[Routed],
    o: &Originate,
    mut ask: Ask,
    stopped: impl Fn(&Stop) -> A + Send + 'static,
    answer_of: impl Fn(Outcome) -> (A, Option<FollowUp>),
) -> Result<(A, Option<Stop>), StoreError> {
    let id = rec.id;
    let dialect = rec.dialect;
    // The partner's masks replace what a side is shown; the real one is kept.
    let masked = guard::mask(o, &ask.masks);
    let o = masked.as_ref().unwrap_or(o);
    let real_cids = masked.as_ref().map(|_| {
        let real = (
            rec.a_cid.clone().filter(|_| ask.masks[0].is_some()),
            rec.b_cid.clone().filter(|_| ask.masks[1].is_some()),
        );
        rec.set_plan(&o.plan);
        real
    });
    ask.caller_id = guard::unlisted_caller_id(&o.plan, &ask);
    rec.deadline_at = Some(deadline(rec.at, &o.plan, app.runtime().config.calls.grace));
    let events = Events::new(app.store.clone());
    // What goes upstream is recorded before it is sent.
    // A channel of the first provider that has one free is taken before the
    // request is recorded: one whose channels are all in use passes the call
    // on at once, and two requests never count on one channel.
    let reserved =
        (route.iter().enumerate()).find_map(|(i, r)| Channel::take(&r.health).map(|ch| (i, ch)));
    let start = reserved.as_ref().map_or(0, |(i, _)| *i);
    let mut held = reserved.map(|(_, ch)| ch);
    let first = route.get(start);
    let upstream = first.map(|r| r.provider.params(o)).unwrap_or_default();
    if let Some(r) = first {
        rec.provider = Some(r.provider.name().to_string());
        rec.upstream_request = Some(r.provider.describe(&upstream).to_string());
    }
    // That no provider has one free is a guard stop of its own.
    ask.no_channel = (!route.is_empty() && held.is_none()).then(|| {
        route
            .iter()
            .map(channels_busy)
            .collect::<Vec<_>>()
            .join("; ")
    });
    let early = match first {
        Some(r) if r.provider.is_local() => Some(match held.take() {
            Some(ch) => {
                let out = r.provider.originate(o, upstream.clone(), events.clone());
                let (a, f) = answer_of(out.await);
                (a, f, Some(ch))
            }
            None => {
                let (a, f) = answer_of(Err(ProviderError::Unreachable(channels_busy(r))));
                (a, f, None)
            }
        }),
        Some(_) => None,
        // Every provider of the route is down or kept away by its breaker.
        None => {
            let (a, f) = answer_of(Err(ProviderError::Unreachable(
                "no provider of the route is available".into(),
            )));
            Some((a, f, None))
        }
    };
    let early_record = early.as_ref().map(|(a, _, _)| a.clone());
    ask.a.clone_from(&rec.a_number);
    ask.b.clone_from(&rec.b_number);
    ask.numbers = (o.plan.a.participants.iter().map(|p| (Side::A, p)))
        .chain(o.plan.b.participants.iter().map(|p| (Side::B, p)))
        .map(|(side, p)| (side, p.number.as_str().to_string()))
        .collect();
    let kept = app.guard.clone();
    let fields = o.fields();
    let stop = app
        .store
        .write(move |c| {
            let stop = match partners::is_enabled_for(c, &ask.partner_id, dialect)? {
                false => Some(Stop::disabled()),
                true => guard::check(c, &ask, id, &kept)?,
            };
            if let Some(stop) = stop {
                // Nothing goes upstream: the row must not say otherwise. A
                // deferred call is placed later and reported as it goes.
                let deferred = stop.deferred_to;
                let rec = calls::NewCall {
                    provider: None,
                    upstream_request: None,
                    callback_url: rec.callback_url.clone().filter(|_| deferred.is_some()),
                    deadline_at: None,
                    auth_ok: rec.auth_ok.filter(|_| stop.rule != guard::Rule::Disabled),
                    ..rec.clone()
                };
                let answer = stopped(&stop);
                let event = match deferred {
                    Some(_) => Event::Deferred,
                    None => Event::Rejected,
                };
                let events = [(event, Some(stop.detail.as_str()))];
                calls::insert(c, &rec, &events, Some(answer.answered()))?;
                calls::set_guard(c, id, stop.rule.as_str(), stop.replay_of)?;
                if let Some(at) = deferred {
                    calls::schedule(c, id, at, &fields, stop.queue_until)?;
                }
                if let Some((a, b)) = &real_cids {
                    calls::set_real_cids(c, id, a.as_deref(), b.as_deref())?;
                }
                return Ok(Some((answer, stop)));
            }
            match &early_record {
                Some(a) => {
                    let events = [(Event::Originating, None), (a.event(), a.detail())];
                    calls::insert(c, &rec, &events, Some(a.answered()))?
                }
                None => calls::insert(c, &rec, &[(Event::Originating, None)], None)?,
            };
            if let Some((a, b)) = &real_cids {
                calls::set_real_cids(c, id, a.as_deref(), b.as_deref())?;
            }
            Ok(None)
        })
        .await?;
    if let Some((answer, stop)) = stop {
        if stop.deferred_to.is_some() {
            app.scheduled.notify_one();
        }
        app.metrics.stop(stop.rule.as_str());
        log::info!("call {id}: {dialect} request stopped: {}", stop.detail);
        return Ok((answer, Some(stop)));
    }
    let (answer, follow, channel) = match early {
        Some((a, f, channel)) => (a, f, channel),
        None => {
            let (out, channel) =
                ask_route(app, route, start, held.take(), o, upstream, &events).await;
            let (answer, follow) = answer_of(out);
            let a = answer.clone();
            let w = app
                .store
                .write(move |c| {
                    let at = now_ms();
                    calls::apply(c, id, &[(a.event(), a.detail())], at)?;
                    calls::set_result(c, id, at, a.answered())
                })
                .await;
            if let Err(e) = w {
                // The call is placed: answer the partner anyway; the row shows `originating`.
                log::error!("call {id}: the provider's answer was not recorded: {e}");
            }
            (answer, follow, channel)
        }
    };
    follow_up(app, id, follow, channel);
    Ok((answer, None))
}

/// Has the providers of `route`, from `start` on, place `o` (sending `params`
/// to the first), in order: one that cannot be reached, fails on its side or
/// has no channel free passes the call to the next, recorded as a `failover`
/// event with the provider. `held` is a channel of the first, taken already.
/// The last outcome, and the channel of the provider that gave it.
pub async fn ask_route(
    app: &App,
    route: &[Routed],
    start: usize,
    mut held: Option<Channel>,
    o: &Originate,
    mut params: Vec<(&'static str, String)>,
    events: &Events,
) -> (Outcome, Option<Channel>) {
    let id = o.call_id;
    let mut i = start;
    loop {
        let Some(r) = route.get(i) else {
            let why = "no provider of the route is available".to_string();
            return (Err(ProviderError::Unreachable(why)), None);
        };
        // The breaker is asked right before the provider is: a half-open
        // probe is taken only by a call that goes there.
        let channel = held.take().or_else(|| Channel::take(&r.health));
        let asked = channel.is_some() && r.health.allow();
        let out = match (asked, &channel) {
            (true, _) => r.provider.originate(o, params, events.clone()).await,
            (false, None) => Err(ProviderError::Unreachable(channels_busy(r))),
            (false, Some(_)) => Err(ProviderError::Unreachable(format!(
                "provider {}'s breaker opened meanwhile",
                r.provider.name()
            ))),
        };
        let Some((why, failure)) = worth_failover(&out) else {
            r.health.success();
            log::debug!("call {id}: placed via {}", r.provider.name());
            return (out, channel);
        };
        match (asked, failure) {
            (true, true) => r.health.failure(&why),
            // It answered sanely, for a call it cannot place.
            (true, false) => r.health.success(),
            (false, _) => {}
        }
        log::warn!("call {id}: provider {} failed: {why}", r.provider.name());
        let Some(next) = route.get(i + 1) else {
            return (out, channel);
        };
        // The next provider is recorded before it is asked.
        params = next.provider.params(o);
        let (name, desc) = (
            next.provider.name().to_string(),
            next.provider.describe(&params),
        );
        let detail = format!("{} failed: {why}; trying {name}", r.provider.name());
        let w = app
            .store
            .write(move |c| {
                calls::apply(c, id, &[(Event::Failover, Some(&detail))], now_ms())?;
                calls::set_provider(c, id, &name, &desc)
            })
            .await;
        if let Err(e) = w {
            log::error!("call {id}: the failover was not recorded: {e}");
        }
        i += 1;
    }
}

/// Follows a placed call: its follow-up runs as a task the call's hang-up can
/// abort, holding the provider's channel while it runs; a call not followed
/// frees the channel here.
pub fn follow_up(app: &App, id: CallId, follow: Option<FollowUp>, channel: Option<Channel>) {
    if let Some(f) = follow {
        let counted = async move {
            let _channel = channel;
            f.await;
        };
        let task = tokio::spawn(counted);
        app.following.set_task(id, task.abort_handle());
    }
}

/// Why `r` cannot be asked: its channels are all in use.
pub fn channels_busy(r: &Routed) -> String {
    let max = r
        .health
        .max_channels
        .load(std::sync::atomic::Ordering::Relaxed);
    format!(
        "all {max} channels of provider {} are in use",
        r.provider.name()
    )
}

/// When a call with no end heard is reconciled (unix ms): the longest it can
/// take (every round ringing out on both sides, then its time limit) plus grace.
pub fn deadline(at: i64, plan: &CallPlan, grace: Duration) -> i64 {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    at.saturating_add(ms(plan.longest()))
        .saturating_add(ms(grace))
}

/// One event of one call, as a callback formatter sees it: what happened, to
/// which leg, and what the call has become.
#[derive(Debug, Clone, Copy)]
pub struct Notice<'a> {
    pub call_id: CallId,
    pub partner_id: Option<&'a str>,
    /// The event's sequence number in its call: 1, 2, …
    pub seq: i64,
    pub event_id: &'a str,
    pub event: &'a Event,
    /// The call's state after the event.
    pub state: CallState,
    /// When the event happened (unix ms).
    pub at: i64,
    /// The number of the event's leg (canonical E.164), when it has one.
    pub number: Option<&'a str>,
    /// The partner's memo for the call (its reference, token or name).
    pub memo: Option<&'a str>,
    /// With the event that ends the call, its legs, final; empty with any other.
    pub legs: &'a [LegView],
    /// The call's A and B numbers as requested (E.164 with `+`, or extensions).
    pub numbers: [Option<&'a str>; 2],
    /// What the call's dialect stored with it for its callbacks
    /// (`calls.dialect_data`), e.g. Spokn's `userid`.
    pub data: Option<&'a serde_json::Value>,
    /// The call's recording, once reported.
    pub recording: Option<&'a str>,
    /// When the call was requested and, if it was, bridged (unix ms).
    pub created_at: i64,
    pub bridged_at: Option<i64>,
}

/// One leg of a call, as a callback formatter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegView {
    pub side: Side,
    pub attempt: u16,
    pub number: Option<String>,
    pub state: LegState,
    /// Q.850.
    pub cause: Option<u16>,
    /// When it started ringing (or was created), unix ms.
    pub created_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
}

impl LegView {
    /// How long it was answered, in whole seconds rounded up.
    pub fn seconds(&self) -> i64 {
        match (self.answered_at, self.ended_at) {
            (Some(a), Some(e)) => ((e - a).max(0) + 999) / 1000,
            _ => 0,
        }
    }
}

/// The leg reported for `side`: the one that answered, else its last try.
pub fn reported_leg(legs: &[LegView], side: Side) -> Option<&LegView> {
    let of_side: Vec<&LegView> = legs.iter().filter(|l| l.side == side).collect();
    of_side
        .iter()
        .find(|l| l.answered_at.is_some())
        .or(of_side.last())
        .copied()
}

/// A callback ready to send: what goes in the body, and as what; where to and
/// how, when the call's dialect says (Airtel's callBackURLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The URL, when not the call's callback URL. Its host is checked against the
    /// partner's `callback_hosts` at every attempt like any other.
    pub url: Option<String>,
    /// `POST` unless said.
    pub method: Option<String>,
    /// Extra request headers the partner asked for.
    pub headers: Vec<(String, String)>,
}

impl Payload {
    /// A body POSTed to the call's callback URL.
    pub fn new(content_type: &'static str, body: Vec<u8>) -> Payload {
        Payload {
            content_type,
            body,
            url: None,
            method: None,
            headers: Vec::new(),
        }
    }
}

/// How a dialect tells its partners what happened to their calls. The outbox,
/// signing, retries and host checks are shared; a dialect supplies only this.
pub trait CallbackFormat: Sync {
    /// The name stored with each callback (`callbacks.format`).
    fn name(&self) -> &'static str;

    /// The callbacks for `n`, in the order they are to be delivered: none when
    /// the dialect does not report this kind of event, several when it reports
    /// one event in several requests (Spokn: one per leg).
    fn format(&self, n: &Notice) -> Vec<Payload>;
}

/// The callback formats, each named after its dialect.
static FORMATS: &[&dyn CallbackFormat] = &[
    &native::NativeFormat,
    &spokn::SpoknFormat,
    &airtel::AirtelFormat,
];

/// The callback format of calls that came in through `dialect`. Dialects with no
/// callback format of their own (XIP) report in the native JSON format.
pub fn callback_format(dialect: &str) -> &'static dyn CallbackFormat {
    FORMATS
        .iter()
        .copied()
        .find(|f| f.name() == dialect)
        .unwrap_or(&native::NativeFormat)
}
