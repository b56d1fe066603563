//! Click-to-call servers: whatever actually rings the phones.
//!
//! - [`sim`]: the built-in simulator, which plays the call's plan on timers with
//!   outcomes chosen by number patterns.
//! - [`ami`]: the local Asterisk, through its manager interface.
//! - [`xip`], [`spokn`], [`airtel`]: upstream click-to-call APIs over HTTP(S);
//!   Spokn's and Airtel's call c2cd back with the call's progress.
//! - [`health`]: each provider's circuit breaker and counters, for routing.
//! - [`recordings`]: recordings as c2cd serves them.
//!
//! A provider receives an [`Originate`] (the call's plan, with the nine XIP
//! parameters of its first participants), answers with a [`Reply`] that the
//! dialect turns into its own answer, and may return a follow-up task that
//! reports the call's progress as [`Event`]s through [`Events`].

pub mod airtel;
pub mod ami;
pub mod health;
pub mod recordings;
pub mod sim;
pub mod spokn;
pub mod upstream;
pub mod xip;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::config::{self, ProviderKind};
use crate::core::call::{Event, Side};
use crate::core::plan::CallPlan;
use crate::core::{md5_hex, now_ms, CallId};
use crate::outbound::HttpClient;
use crate::store::{calls, Store, StoreError};

/// The Auth sent upstream when the partner's own Auth did not match, as the XIP
/// seed requires: the upstream fails the call and the vendor sees its usual answer.
pub const BAD_INCOMING_AUTH: &str = "BadIncomingAuth";

/// A request to connect A (RequestorPhone) and then B (DestinationPhone), in the
/// XIP seed's terms. Numbers are E.164 digits without `+`.
#[derive(Debug, Clone)]
pub struct Originate {
    pub call_id: CallId,
    pub requestor_phone: String,
    pub requestor_cid: String,
    pub destination_phone: String,
    pub destination_cid: String,
    pub prompt_set: String,
    pub time_limit: u32,
    pub partner_id: String,
    pub source: String,
    /// Whether the partner's Auth matched; when not, Auth upstream is `BadIncomingAuth`.
    pub incoming_auth_ok: bool,
    /// The whole request: every participant, strategy, retries, recording. The
    /// fields above are its first participants, as one-number servers take it.
    pub plan: Arc<CallPlan>,
}

impl Originate {
    /// The request to place `plan` for `partner`, the XIP fields taken from each
    /// side's first participant; `None` when a side has none.
    pub fn for_plan(
        call_id: CallId,
        plan: Arc<CallPlan>,
        partner: &config::Partner,
    ) -> Option<Originate> {
        let (a, b) = (plan.a.first()?, plan.b.first()?);
        let digits = |s: Option<&str>| {
            s.map(|c| c.trim_start_matches('+').to_string())
                .unwrap_or_default()
        };
        Some(Originate {
            call_id,
            requestor_phone: a.number.digits().to_string(),
            requestor_cid: digits(plan.a.caller_id_for(a)),
            destination_phone: b.number.digits().to_string(),
            destination_cid: digits(plan.b.caller_id_for(b)),
            prompt_set: partner.prompt_set.clone(),
            time_limit: u32::try_from(plan.time_limit.as_secs()).unwrap_or(u32::MAX),
            partner_id: partner.id.clone(),
            source: partner.source.clone(),
            incoming_auth_ok: true,
            plan,
        })
    }

    /// The one-number fields, as a deferred call keeps them (`calls.originate`);
    /// the plan is kept apart (`calls.plan`).
    pub fn fields(&self) -> serde_json::Value {
        serde_json::json!({
            "requestor_phone": self.requestor_phone,
            "requestor_cid": self.requestor_cid,
            "destination_phone": self.destination_phone,
            "destination_cid": self.destination_cid,
            "prompt_set": self.prompt_set,
            "time_limit": self.time_limit,
            "partner_id": self.partner_id,
            "source": self.source,
            "incoming_auth_ok": self.incoming_auth_ok,
        })
    }

    /// A deferred call's request, from what [`Originate::fields`] kept.
    pub fn from_fields(
        call_id: CallId,
        v: &serde_json::Value,
        plan: Arc<CallPlan>,
    ) -> Option<Originate> {
        let text = |k: &str| v[k].as_str().map(str::to_string);
        Some(Originate {
            call_id,
            requestor_phone: text("requestor_phone")?,
            requestor_cid: text("requestor_cid")?,
            destination_phone: text("destination_phone")?,
            destination_cid: text("destination_cid")?,
            prompt_set: text("prompt_set")?,
            time_limit: u32::try_from(v["time_limit"].as_u64()?).ok()?,
            partner_id: text("partner_id")?,
            source: text("source")?,
            incoming_auth_ok: v["incoming_auth_ok"].as_bool()?,
            plan,
        })
    }

    fn field(&self, name: &str) -> String {
        match name {
            "RequestorPhone" => self.requestor_phone.clone(),
            "RequestorCID" => self.requestor_cid.clone(),
            "DestinationPhone" => self.destination_phone.clone(),
            "DestinationCID" => self.destination_cid.clone(),
            "PromptSet" => self.prompt_set.clone(),
            "TimeLimit" => self.time_limit.to_string(),
            "PartnerID" => self.partner_id.clone(),
            "Source" => self.source.clone(),
            _ => String::new(),
        }
    }

    /// The nine parameters, in the seed's order, with Auth computed as
    /// MD5(secret + the `auth_fields` values), or `BadIncomingAuth`.
    pub fn params(&self, secret: &str, auth_fields: &[String]) -> Vec<(&'static str, String)> {
        let auth = if self.incoming_auth_ok {
            let values: Vec<String> = auth_fields.iter().map(|f| self.field(f)).collect();
            let mut parts: Vec<&str> = vec![secret];
            parts.extend(values.iter().map(String::as_str));
            md5_hex(&parts)
        } else {
            BAD_INCOMING_AUTH.to_string()
        };
        config::XIP_PARAMS
            .iter()
            .map(|&k| {
                (
                    k,
                    if k == "Auth" {
                        auth.clone()
                    } else {
                        self.field(k)
                    },
                )
            })
            .collect()
    }
}

/// What the click-to-call server answered, passed to the partner verbatim.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// The event this answer means for the call: accepted, handed off, or failed.
    pub event: Event,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The server answered, and its answer says it did not place the call.
    #[error("refused: {0}")]
    Refused(Refusal),
}

/// Why a click-to-call server did not place a call: the code it answered, what
/// the code means, and what the refusal is about. The call's row keeps the
/// first two (`calls.error`); the third decides the failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code as the server gave it, named: `Spokn code 103`, `Spokn HTTP
    /// 401`, `Airtel HTTP 400 INVALID_CALLER_ID`.
    pub code: String,
    /// What the code means, in its seed's words (or the server's own, for a
    /// code its seed does not list).
    pub meaning: String,
    pub about: About,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.meaning)
    }
}

/// What a refusal is about. No call was placed, so asking the route's next
/// provider never rings anyone twice; the question is only whether the next
/// one would do better, and whether this one is unwell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// The server failed on its side (a 5xx, Spokn's 105): the next provider
    /// is asked and the failure counts against this one's breaker.
    Fault,
    /// This provider's account cannot place calls: its credentials, its
    /// settings in c2cd's config (URL, call flow, customer, caller ID) or its
    /// credit. Every call fails here until the operator acts, so it is treated
    /// as a fault.
    Account,
    /// The server does not serve this side's destination: the next provider
    /// may, so it is asked; this one is well (its breaker counts a success).
    Destination(Side),
    /// This side's number is not valid: final, the partner is told.
    Number(Side),
    /// The request was refused as invalid or conflicting: final. c2cd shapes
    /// each request to its server (a provider that cannot place a plan says
    /// so before it is asked), so this is a request no provider should get.
    Request,
}

impl About {
    /// Whether the route's next provider is asked.
    pub fn fails_over(self) -> bool {
        !matches!(self, About::Number(_) | About::Request)
    }

    /// Whether it counts as a failure of the provider (its breaker).
    pub fn is_failure(self) -> bool {
        matches!(self, About::Fault | About::Account)
    }
}

/// A task that follows the call after the provider's answer has been recorded.
pub type FollowUp = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where providers report what happens to a call.
#[derive(Clone)]
pub struct Events {
    store: Store,
}

impl Events {
    pub fn new(store: Store) -> Self {
        Events { store }
    }

    /// Records `events` in order, in one write, and returns once they are
    /// committed; then logs each at debug. Returns how many were applied (an
    /// illegal transition stops the rest).
    pub async fn emit_all(&self, id: CallId, events: Vec<Event>) -> usize {
        if events.is_empty() {
            return 0;
        }
        let kinds: Vec<String> = events.iter().map(Event::kind).collect();
        let events: Vec<(Event, Option<&'static str>)> =
            events.into_iter().map(|e| (e, None)).collect();
        let r = self
            .store
            .write(move |c| calls::apply(c, id, &events, now_ms()))
            .await;
        match r {
            Ok(states) => {
                let n = states.len();
                for (kind, state) in kinds.iter().zip(states) {
                    log::debug!("call {id}: {kind} -> {state}");
                }
                n
            }
            // Stopping: the call stays in its last recorded state.
            Err(StoreError::Closed) => {
                log::debug!(
                    "call {id}: {} not recorded: c2cd is stopping",
                    kinds.join(", ")
                );
                0
            }
            Err(e) => {
                log::error!("call {id}: cannot record {}: {e}", kinds.join(", "));
                0
            }
        }
    }
}

pub enum Provider {
    Sim(sim::Sim),
    Xip(xip::Xip),
    Ami(ami::call::Ami),
    Spokn(spokn::SpoknUp),
    Airtel(airtel::AirtelUp),
}

impl Provider {
    pub fn name(&self) -> &str {
        match self {
            Provider::Sim(s) => &s.name,
            Provider::Xip(x) => &x.name,
            Provider::Ami(a) => &a.name,
            Provider::Spokn(s) => &s.name,
            Provider::Airtel(a) => &a.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Provider::Sim(_) => "sim",
            Provider::Xip(_) => "xip",
            Provider::Ami(_) => "ami",
            Provider::Spokn(_) => "spokn",
            Provider::Airtel(_) => "airtel",
        }
    }

    /// Whether the provider can take a call now: an AMI provider whose manager
    /// link is down cannot.
    pub fn available(&self) -> bool {
        match self {
            Provider::Ami(a) => a.link() == ami::Link::Up,
            _ => true,
        }
    }

    /// Whether the provider only simulates: it places no real call, so it may be
    /// asked before the request is durable.
    pub fn is_local(&self) -> bool {
        matches!(self, Provider::Sim(_))
    }

    /// Whether the provider can be sent an XIP request with a bad Auth, as the
    /// XIP seed wants (`Auth=BadIncomingAuth`, and the click-to-call server
    /// forces the failure): an XIP server and the simulator can. The others
    /// have no such field: asked, they would place the call.
    pub fn takes_bad_auth(&self) -> bool {
        matches!(self, Provider::Sim(_) | Provider::Xip(_))
    }

    /// Whether the provider still reports the progress of call `id`. The XIP
    /// provider hands calls off and follows none.
    pub fn is_following(&self, id: CallId) -> bool {
        match self {
            Provider::Sim(s) => s.is_following(id),
            // Upstream APIs follow calls themselves; their callbacks report them.
            Provider::Xip(_) | Provider::Spokn(_) | Provider::Airtel(_) => false,
            Provider::Ami(a) => a.is_following(id),
        }
    }

    /// Why the provider cannot place `plan`, if it cannot.
    pub fn refuses(&self, plan: &CallPlan) -> Option<String> {
        match self {
            Provider::Sim(_) => None,
            Provider::Xip(x) if !plan.is_simple() => Some(format!(
                "provider {} (xip) dials one participant per side without retries",
                x.name
            )),
            Provider::Xip(x) if plan.record => {
                Some(format!("provider {} (xip) cannot record calls", x.name))
            }
            Provider::Xip(x) if plan.has_local() => Some(format!(
                "provider {} (xip) dials phone numbers, not local extensions",
                x.name
            )),
            Provider::Xip(_) => None,
            Provider::Ami(a) => a.refuses(plan),
            Provider::Spokn(s) => s.refuses(plan),
            Provider::Airtel(a) => a.refuses(plan),
        }
    }

    /// The parameters that will be sent for `o`, as recorded before sending.
    pub fn params(&self, o: &Originate) -> Vec<(&'static str, String)> {
        match self {
            Provider::Sim(s) => s.params(o),
            Provider::Xip(x) => x.params(o),
            Provider::Ami(a) => a.params(o),
            Provider::Spokn(s) => s.params(o),
            Provider::Airtel(a) => a.params(o),
        }
    }

    /// What is recorded in `calls.upstream_request`.
    pub fn describe(&self, params: &[(&'static str, String)]) -> Value {
        let map: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect();
        match self {
            Provider::Sim(s) => json!({ "provider": s.name, "kind": "sim", "params": map }),
            Provider::Xip(x) => json!({
                "provider": x.name, "kind": "xip", "url": x.url_string(), "method": x.method_str(), "params": map,
            }),
            Provider::Ami(a) => json!({ "provider": a.name, "kind": "ami", "originate": map }),
            Provider::Spokn(s) => {
                json!({ "provider": s.name, "kind": "spokn", "url": s.url_string(), "params": map })
            }
            Provider::Airtel(a) => json!({
                "provider": a.name, "kind": "airtel", "url": a.url_string(),
                "body": map.get("body").and_then(|b| b.as_str()).and_then(|b| serde_json::from_str::<Value>(b).ok()),
            }),
        }
    }

    /// Asks the click-to-call server to place the call.
    pub async fn originate(
        &self,
        o: &Originate,
        params: Vec<(&'static str, String)>,
        events: Events,
    ) -> Result<(Reply, Option<FollowUp>), ProviderError> {
        match self {
            Provider::Sim(s) => Ok(s.originate(o, &params, events)),
            Provider::Xip(x) => x.originate(params).await.map(|r| (r, None)),
            Provider::Ami(a) => a.originate(o, events).await,
            Provider::Spokn(s) => s.originate(params).await.map(|r| (r, None)),
            Provider::Airtel(a) => a.originate(o).await.map(|r| (r, None)),
        }
    }

    /// Whether a call placed here can be hung up by c2cd: the upstream APIs
    /// offer no cancel.
    pub fn can_cancel(&self) -> bool {
        matches!(self, Provider::Sim(_) | Provider::Ami(_))
    }

    /// Ends call `id` at the click-to-call server, where it can (AMI hangs up
    /// the call's channels); the caller then stops following it.
    pub async fn hang_up(&self, id: CallId) {
        if let Provider::Ami(a) = self {
            a.hang_up(id).await;
        }
    }
}

/// The calls whose progress a provider is reporting right now, with the task
/// that reports it. A call that has passed its deadline and is not followed here
/// is lost (see `reconcile`); a hang-up stops the task.
#[derive(Default)]
pub struct Following {
    calls: std::sync::Mutex<HashMap<CallId, Option<tokio::task::AbortHandle>>>,
}

impl Following {
    /// Marks `id` followed until the returned guard is dropped.
    pub fn follow(self: &Arc<Self>, id: CallId) -> FollowGuard {
        if let Ok(mut c) = self.calls.lock() {
            c.insert(id, None);
        }
        FollowGuard {
            following: self.clone(),
            id,
        }
    }

    /// Records the task following `id`, so that a hang-up can stop it.
    pub fn set_task(&self, id: CallId, task: tokio::task::AbortHandle) {
        if let Ok(mut c) = self.calls.lock() {
            if let Some(slot) = c.get_mut(&id) {
                *slot = Some(task);
            }
        }
    }

    pub fn contains(&self, id: CallId) -> bool {
        self.calls
            .lock()
            .map(|c| c.contains_key(&id))
            .unwrap_or(false)
    }

    /// Stops following `id`: its task reports nothing more. Returns whether it
    /// was followed.
    pub fn stop(&self, id: CallId) -> bool {
        let task = self.calls.lock().ok().and_then(|mut c| c.remove(&id));
        match task {
            Some(t) => {
                if let Some(t) = t {
                    t.abort();
                }
                true
            }
            None => false,
        }
    }
}

pub struct FollowGuard {
    following: Arc<Following>,
    id: CallId,
}

impl Drop for FollowGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.following.calls.lock() {
            c.remove(&self.id);
        }
    }
}

/// The providers of one config, by name.
pub struct Providers {
    map: HashMap<String, Arc<Provider>>,
    health: HashMap<String, Arc<health::Health>>,
    /// In the config's order, for reports.
    names: Vec<String>,
}

impl Providers {
    /// The providers of `cfg`. On a reload, `previous` lends what should
    /// survive it: an AMI provider with the same settings (its manager
    /// connection and calls), and each provider's health.
    pub fn build(
        cfg: &config::Config,
        following: &Arc<Following>,
        client: &HttpClient,
        previous: Option<&Providers>,
    ) -> Providers {
        let map = cfg
            .providers
            .iter()
            .map(|p| {
                let kept = previous.and_then(|prev| prev.map.get(&p.name)).filter(|old| {
                    matches!((&***old, &p.kind), (Provider::Ami(a), ProviderKind::Ami(c)) if a.same_settings(c))
                });
                if let Some(old) = kept {
                    return (p.name.clone(), old.clone());
                }
                let provider = match &p.kind {
                    ProviderKind::Sim(c) => {
                        Provider::Sim(sim::Sim::new(&p.name, c.clone(), following.clone()))
                    }
                    ProviderKind::Xip(c) => {
                        Provider::Xip(xip::Xip::new(&p.name, c.clone(), client.clone()))
                    }
                    ProviderKind::Ami(c) => {
                        Provider::Ami(ami::call::Ami::new(&p.name, c.clone(), following.clone()))
                    }
                    ProviderKind::Airtel(c) => Provider::Airtel(airtel::AirtelUp::new(
                        &p.name,
                        c.clone(),
                        client.clone(),
                        &cfg.server.public_url,
                    )),
                    ProviderKind::Spokn(c) => Provider::Spokn(spokn::SpoknUp::new(
                        &p.name,
                        c.clone(),
                        client.clone(),
                        &cfg.server.public_url,
                    )),
                };
                (p.name.clone(), Arc::new(provider))
            })
            .collect();
        let health = cfg
            .providers
            .iter()
            .map(|p| {
                let kept = previous.and_then(|prev| prev.health.get(&p.name)).cloned();
                let h = kept.unwrap_or_else(|| {
                    Arc::new(health::Health::new(
                        cfg.calls.breaker_failures,
                        cfg.calls.breaker_cooldown,
                    ))
                });
                h.max_channels
                    .store(p.max_channels, std::sync::atomic::Ordering::Relaxed);
                (p.name.clone(), h)
            })
            .collect();
        let names = cfg.providers.iter().map(|p| p.name.clone()).collect();
        Providers { map, health, names }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.map.get(name).cloned()
    }

    /// Each AMI provider's name, manager number and events from now on.
    pub fn ami_events(&self) -> Vec<(String, u64, tokio::sync::broadcast::Receiver<ami::Message>)> {
        self.names
            .iter()
            .filter_map(|n| match self.map.get(n).map(|p| &**p) {
                Some(Provider::Ami(a)) => {
                    let (id, rx) = a.events();
                    Some((n.clone(), id, rx))
                }
                _ => None,
            })
            .collect()
    }

    /// The providers of a route, in order, each with its health.
    pub fn route(&self, names: &[String]) -> Vec<Routed> {
        names
            .iter()
            .filter_map(|n| {
                Some(Routed {
                    provider: self.map.get(n)?.clone(),
                    health: self.health.get(n)?.clone(),
                })
            })
            .collect()
    }

    /// Each provider's kind, link and health, for `/v1/providers` and `/metrics`.
    pub fn report(&self) -> Vec<Value> {
        self.names
            .iter()
            .filter_map(|n| {
                let p = self.map.get(n)?;
                let mut v = self.health.get(n)?.report();
                v["name"] = n.clone().into();
                v["kind"] = p.kind().into();
                v["available"] = p.available().into();
                Some(v)
            })
            .collect()
    }
}

/// A provider of a route, with its health.
#[derive(Clone)]
pub struct Routed {
    pub provider: Arc<Provider>,
    pub health: Arc<health::Health>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(ok: bool) -> Originate {
        let n = |s| crate::core::phone::E164::from_digits(s).unwrap();
        let plan = CallPlan::simple(
            n("16045551234"),
            None,
            n("16045550000"),
            None,
            std::time::Duration::from_secs(7200),
        );
        Originate {
            plan: Arc::new(plan),
            call_id: CallId::new(),
            requestor_phone: "16045551234".into(),
            requestor_cid: "6045550000".into(),
            destination_phone: "16045550000".into(),
            destination_cid: "6045551234".into(),
            prompt_set: "XIP1".into(),
            time_limit: 7200,
            partner_id: "102821".into(),
            source: "XIP1".into(),
            incoming_auth_ok: ok,
        }
    }

    #[test]
    fn params_are_the_nine_in_order_with_auth() {
        let fields = vec![
            "PartnerID".to_string(),
            "RequestorPhone".into(),
            "DestinationPhone".into(),
        ];
        let p = o(true).params("up", &fields);
        let names: Vec<_> = p.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, config::XIP_PARAMS);
        assert_eq!(
            p[8].1,
            md5_hex(&["up", "102821", "16045551234", "16045550000"])
        );
        assert_eq!(p[5].1, "7200");
        let bad = o(false).params("up", &fields);
        assert_eq!(bad[8].1, BAD_INCOMING_AUTH);
        assert_eq!(&bad[..8], &p[..8]);
    }
}
