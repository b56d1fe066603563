//! An upstream Airtel click-to-call API (seed 001) as a click-to-call server:
//! the call flow built from the call's plan as the seed shows it, HTTP Basic
//! with the account's credentials, the answer read into a result, and the
//! real-time events and the CDR Airtel posts back (at
//! `/callbacks/airtel/<call id>/<sig>`) driving the call. The event names and
//! the CDR's shape are those c2cd's own Airtel front door sends; the seed shows
//! `Removed` with its `metaData` cause, and no CDR.
//!
//! Both are read against the plan stored with the call and the legs it has
//! recorded: an address names a participant of the plan, and so its side; a
//! side's legs are numbered in the order they start, as the core numbers them
//! and the CDR's `attempt` does; and a leg's end ends the call only when no
//! retry and no other participant of its side can still come (see
//! [`event_events`]).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

use super::spokn::signature;
use super::{upstream, About, Originate, ProviderError, Refusal, Reply};
use crate::config::AirtelUpConfig;
use crate::core::call::{next, q850_text, CallState, Event, Leg, LegOutcome, LegState, Side};
use crate::core::phone::Address;
use crate::core::plan::{CallPlan, Participant, SidePlan, Strategy};
use crate::core::{now_ms, CallId};
use crate::dialect::LegView;
use crate::outbound::HttpClient;
use crate::store::calls;

/// The path Airtel calls back on.
pub const CALLBACK_PATH: &str = "/callbacks/airtel/";

pub struct AirtelUp {
    pub name: String,
    cfg: AirtelUpConfig,
    client: HttpClient,
    public_url: String,
}

impl AirtelUp {
    pub fn new(name: &str, cfg: AirtelUpConfig, client: HttpClient, public_url: &str) -> AirtelUp {
        AirtelUp {
            name: name.to_string(),
            cfg,
            client,
            public_url: public_url.to_string(),
        }
    }

    pub fn url_string(&self) -> String {
        self.cfg.url.to_string()
    }

    /// A number's 10 digits, when it is in the account's country.
    fn ten(&self, number: &str) -> Option<String> {
        ten_of(number, &self.cfg.country_code)
    }

    /// Why Airtel cannot place `plan`: numbers outside its country, or round
    /// robin (Airtel's pools are Airtel's own).
    pub fn refuses(&self, plan: &CallPlan) -> Option<String> {
        let numbers_ok = [&plan.a, &plan.b]
            .iter()
            .flat_map(|s| s.participants.iter())
            .all(|p| self.ten(p.number.as_str()).is_some());
        let strategies_ok = [&plan.a, &plan.b]
            .iter()
            .all(|s| s.strategy != Strategy::RoundRobin);
        (!(numbers_ok && strategies_ok)).then(|| {
            format!(
                "provider {} (airtel) dials 10-digit numbers of +{} without round robin",
                self.name, self.cfg.country_code
            )
        })
    }

    fn component(&self, s: &SidePlan, time_limit: u64) -> Value {
        let participants: Vec<Value> = s
            .participants
            .iter()
            .map(|p| {
                json!({
                    "participantAddress": self.ten(p.number.as_str()).unwrap_or_default(),
                    "callerId": self.cfg.caller_id,
                    "maxRetries": p.retries,
                    "maxTime": s.ring_timeout.as_secs(),
                })
            })
            .collect();
        json!({
            "callerId": self.cfg.caller_id,
            "mergingStrategy": if s.strategy == Strategy::Parallel { "PARALLEL" } else { "SEQUENTIAL" },
            "participants": participants,
            "maxTime": time_limit,
        })
    }

    /// The workflow request for `o`, as the seed shows it.
    pub fn body(&self, o: &Originate) -> Value {
        let limit = o.plan.time_limit.as_secs();
        let id = o.call_id.to_string();
        let sig = signature(self.cfg.password.expose(), &id);
        let mut from = self.component(&o.plan.a, limit);
        from["callBackURLs"] = json!([{
            "eventType": "ALL",
            "notifyURL": format!("{}{CALLBACK_PATH}{id}/{sig}", self.public_url),
            "method": "POST",
            "headers": {},
        }]);
        let mut flow = json!({
            "initiateCall_1": from,
            "addParticipant_1": self.component(&o.plan.b, limit),
        });
        if o.plan.record {
            flow["record"] = json!({ "enabled": true });
        }
        json!({
            "callFlowId": self.cfg.call_flow_id,
            "customerId": self.cfg.customer_id,
            "callType": "OUTBOUND",
            "callerId": self.cfg.caller_id,
            "callFlowConfiguration": flow,
        })
    }

    /// What is recorded of the request: its JSON, flattened to one field.
    pub fn params(&self, o: &Originate) -> Vec<(&'static str, String)> {
        vec![("body", self.body(o).to_string())]
    }

    pub async fn originate(&self, o: &Originate) -> Result<Reply, ProviderError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.cfg.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                AUTHORIZATION,
                upstream::basic(&self.cfg.username, self.cfg.password.expose()),
            )
            .header(USER_AGENT, concat!("c2cd/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(self.body(o).to_string())))
            .map_err(|e| ProviderError::BadResponse(format!("cannot build the request: {e}")))?;
        let answer = upstream::exchange(
            &self.client,
            req,
            self.cfg.max_response_bytes,
            self.cfg.timeout,
        )
        .await?;
        outcome(answer.status, &answer.body)?;
        Ok(Reply {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
            event: Event::Accepted,
        })
    }
}

/// The `errorCode`s of Airtel's 400 answer (seed 001): what each means, and
/// what the refusal is about. The call flow, customer and caller ID come from
/// the provider's config, so their errors are the account's.
pub fn error_code(code: &str) -> Option<(&'static str, About)> {
    use About::{Account, Fault, Number, Request};
    Some(match code {
        "INCORRECT_CALL_FLOW_ID" => ("incorrect call flow id", Account),
        "CUSTOMER_DETAILS_NOT_AVAILABLE" => ("cpm details not found", Account),
        "INCORRECT_CUSTOMER_ID" => ("incorrect customerId", Account),
        "INVALID_CALLER_ID" => ("invalid called id", Account),
        "CALLER_ID_REGEX_ERROR" => ("caller Id not valid", Account),
        "DUPLICATE_PARTICIPANT_ADDRESS_FOUND" => {
            ("participant address cannot be duplicate", Request)
        }
        // Airtel's own machinery failed, whatever the status says.
        "UNABLE_TO_CREATE_SECRET_KEY" => ("unable to create secret key data", Fault),
        "CLICK_TO_CALL_REQUEST_NULL_ERROR" => {
            ("click to call request cannot be null/blank", Request)
        }
        "FROM_BODY_NULL_ERROR" => ("from body cannot be null/blank", Request),
        "TO_BODY_NULL_ERROR" => ("to body cannot be null/blank", Request),
        "CUSTOMER_ID_NULL_ERROR" => ("customerId cannot be null/blank", Account),
        "CALL_FLOW_ID_NULL_ERROR" => ("callflowId cannot be null/blank", Account),
        "ROUNDROBIN_AGENT_ID_MISSING" => (
            "Agent Pool Id cannot be null/empty in case of Round Robin",
            Request,
        ),
        "ROUNDROBIN_PARTICIPANT_DATA_NOT_ALLOWED" => (
            "Participant List not allowed in case of Round Robin. Please provide Agent pool Id",
            Request,
        ),
        "FROM_NUMBER_NULL_ERROR" => ("There should be atleast one participant in from", Request),
        "FROM_PARTICIPANT_NUMBER_NULL_ERROR" => {
            ("from participant number null error", Number(Side::A))
        }
        "FROM_PARTICIPANT_NUMBER_REGEX_ERROR" => {
            ("from participant number not valid", Number(Side::A))
        }
        "FROM_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE" => {
            ("Max retries can't be greater than 3", Request)
        }
        "CALLER_ID_NULL_ERROR" => ("caller Id required", Account),
        "TO_NUMBER_NULL_ERROR" => ("There should be atleast one participant in to", Request),
        "TO_PARTICIPANT_NUMBER_NULL_ERROR" => ("to participant number null error", Number(Side::B)),
        "TO_PARTICIPANT_NUMBER_REGEX_ERROR" => ("to participant number not valid", Number(Side::B)),
        "TO_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE" => {
            ("Max retries can't be greater than 3", Request)
        }
        "CONFERENCE_MERGING_STRATEGY_NOT_ALLOWED_FOT_TO_NUMBER" => (
            "CONFERENCE merging strategy not allowed in toNumber",
            Request,
        ),
        // The 500's code; its errorMessage ("2") says nothing.
        "AIRTEL_ONLINE_UNCAUGHT_ERROR" => ("uncaught error", Fault),
        _ => return None,
    })
}

/// The HTTP statuses of Airtel's glossary (seed 001) that refuse a call: what
/// each means, and what the refusal is about.
pub fn http_status(status: u16) -> (&'static str, About) {
    use About::{Account, Fault, Request};
    match status {
        400 => ("Bad request", Request),
        // Wrong credentials, or an account not let in: the account's.
        401 => ("Authentication failure", Account),
        403 => ("Forbidden", Account),
        // c2cd's `url` for the provider is not Airtel's workflow resource.
        404 => ("Resource not found", Account),
        405 => ("Method Not Allowed", Account),
        // The request clashes with one Airtel has: placing it elsewhere might
        // ring the same people twice.
        409 => ("Conflict", Request),
        412 => ("Precondition Failed", Request),
        413 => ("Request Entity Too Large", Request),
        500 => ("Internal Server Error", Fault),
        501 => ("Not Implemented", Fault),
        503 => ("Service Unavailable", Fault),
        s if s >= 500 => ("server error", Fault),
        s if (300..400).contains(&s) => ("redirected: set url to where it points", Account),
        _ => ("not a status Airtel documents", Request),
    }
}

/// What Airtel's answer to the workflow request means: `Ok` when the call is
/// placed (2xx with a `correlationId`; 202 is queued for execution, which is
/// placed as far as c2cd can tell). A 2xx without one may hide a placed call:
/// a bad response, which does not fail over. A 400's `errorCode` decides;
/// otherwise the status does.
pub fn outcome(status: u16, body: &[u8]) -> Result<(), ProviderError> {
    let v = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return match v["correlationId"].is_string() || v["status"] == "success" {
            true => Ok(()),
            false => Err(ProviderError::BadResponse(format!(
                "HTTP {status} without a correlationId"
            ))),
        };
    }
    let code = v["errorCode"].as_str().filter(|c| !c.is_empty());
    let (meaning, about) = match (code.and_then(error_code), http_status(status)) {
        // A 5xx is the server's failure whatever code comes with it.
        (Some((m, _)), (_, About::Fault)) => (m.to_string(), About::Fault),
        (Some((m, about)), _) => (m.to_string(), about),
        (None, (m, about)) => {
            // A code the seed does not list: the server's own words for it.
            let said = v["errorMessage"]
                .as_str()
                .filter(|m| code.is_some() && !m.is_empty());
            (said.unwrap_or(m).to_string(), about)
        }
    };
    let code = match code {
        Some(c) => format!("Airtel HTTP {status} {c}"),
        None => format!("Airtel HTTP {status}"),
    };
    Err(ProviderError::Refused(Refusal {
        code,
        meaning,
        about,
    }))
}

/// The leg outcome of a Q.850 cause Airtel reports.
fn outcome_of(cause: Option<u16>) -> LegOutcome {
    match cause {
        // 31 is the normal clearing of networks that give no other.
        Some(16 | 31) | None => LegOutcome::Normal,
        Some(17) => LegOutcome::Busy,
        // No user responding, no answer, subscriber absent (SIP 408, 480).
        Some(18..=20) => LegOutcome::NoAnswer,
        Some(21) => LegOutcome::Rejected,
        Some(_) => LegOutcome::Failed,
    }
}

/// A cause as Airtel writes it: a string of digits, or a number.
fn cause_of(v: &Value) -> Option<u16> {
    v.as_str()
        .and_then(|c| c.trim().parse().ok())
        .or_else(|| v.as_u64().and_then(|c| u16::try_from(c).ok()))
}

/// The words recorded with a leg's end: Airtel's cause and SIP code, and
/// what the cause means.
fn cause_detail(meta: &Value) -> Option<String> {
    let cause = cause_of(&meta["causeCode"])?;
    let sip = match &meta["sipCode"] {
        Value::String(s) if !s.is_empty() => format!(", sipCode {s}"),
        Value::Number(n) => format!(", sipCode {n}"),
        _ => String::new(),
    };
    let words = meta["causeCodeDescription"]
        .as_str()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| q850_text(cause));
    Some(format!("Airtel causeCode {cause}{sip}: {words}"))
}

/// The 10 digits Airtel writes for `number`, when it is a number of
/// `country_code` (`+91` and ten digits).
fn ten_of(number: &str, country_code: &str) -> Option<String> {
    let d = number.strip_prefix('+')?.strip_prefix(country_code)?;
    (d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit())).then(|| d.to_string())
}

/// An address as Airtel reports it, as its 10 digits: the seed writes them
/// alone, but one with the country code (with or without `+`) is the same.
fn address_ten<'a>(address: &'a str, country_code: &str) -> &'a str {
    let d = address.trim().trim_start_matches('+');
    match d.strip_prefix(country_code) {
        Some(t) if t.len() == 10 && t.bytes().all(|b| b.is_ascii_digit()) => t,
        _ => d,
    }
}

/// The side and participant of `plan` an Airtel address names. A number on
/// both sides is taken as A's: Airtel refuses such a call
/// (`DUPLICATE_PARTICIPANT_ADDRESS_FOUND`), so no event names one.
fn participant<'a>(
    plan: &'a CallPlan,
    address: &str,
    country_code: &str,
) -> Option<(Side, &'a Participant)> {
    let address = address_ten(address, country_code);
    [(Side::A, &plan.a), (Side::B, &plan.b)]
        .into_iter()
        .find_map(|(side, s)| {
            s.participants
                .iter()
                .find(|p| ten_of(p.number.as_str(), country_code).as_deref() == Some(address))
                .map(|p| (side, p))
        })
}

/// How many legs `s` rings at most: every participant, and each of its retries.
fn tries(s: &SidePlan) -> usize {
    s.rounds().iter().map(Vec::len).sum()
}

/// Where a call placed through Airtel stands, for reading its next event.
pub struct Standing<'a> {
    /// What the call was to dial: who each address is, and how many tries
    /// each side has.
    pub plan: &'a CallPlan,
    pub state: CallState,
    /// The legs recorded so far: their attempt numbers, numbers and states.
    pub legs: &'a [LegView],
    /// `[airtel] country_code`, which makes Airtel's 10-digit addresses E.164.
    pub country_code: &'a str,
}

impl Standing<'_> {
    /// Whether the end of leg `attempt` of `side` (`answered` before it ends;
    /// `new` when the call had not heard of it) ends the call. The answered
    /// leg's end does: the bridged call ends, or the side that answered left
    /// before it was bridged. An unanswered one does not when it lost the race
    /// to answer, nor while another leg of its side still rings or a retry or
    /// another participant of the side is still to come; a B leg does once A
    /// has left.
    fn ends_call(&self, side: Side, attempt: u16, answered: bool, new: bool) -> bool {
        if answered {
            return true;
        }
        let others = || {
            self.legs
                .iter()
                .filter(move |l| l.side == side && l.attempt != attempt)
        };
        if others().any(|l| matches!(l.state, LegState::Answered | LegState::HungUp)) {
            return false;
        }
        let a_on_line = self
            .legs
            .iter()
            .any(|l| l.side == Side::A && l.state == LegState::Answered);
        if side == Side::B && !a_on_line {
            return true;
        }
        if others().any(|l| !l.state.is_terminal()) {
            return false;
        }
        let started = self.legs.iter().filter(|l| l.side == side).count() + usize::from(new);
        let plan = match side {
            Side::A => &self.plan.a,
            Side::B => &self.plan.b,
        };
        started >= tries(plan)
    }
}

/// What one Airtel real-time event means for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// The call event it brings.
    Event(Event),
    /// Nothing new: a repeat of what the call has heard (a leg already
    /// ringing, answered or bridged), or a try of a participant that has had
    /// all its tries.
    Heard,
    /// Nothing c2cd follows: another event, or an address that is no
    /// participant of the call.
    Ignored,
}

/// What Airtel real-time event `v` means for the call standing at `st`.
///
/// Its `participantAddress` names the plan's participant, and so the side and
/// the leg's number. An event for a participant with a leg still open (created,
/// ringing or answered) is about that leg; any other starts the side's next leg,
/// numbered after the legs recorded on that side (every ring is a leg, numbered
/// per side in the order legs start: the core's numbering, which the CDR's
/// `attempt` follows too). `Removed` ends the call only when nothing more can
/// come of it (see `Standing::ends_call`).
pub fn event_events(v: &Value, st: &Standing) -> Reading {
    let name = v["event"].as_str().unwrap_or_default();
    if name == "Merged" {
        return match st.state {
            CallState::Bridged => Reading::Heard,
            _ => Reading::Event(Event::Bridged),
        };
    }
    if !matches!(name, "Ringing" | "Answered" | "Removed") {
        return Reading::Ignored;
    }
    let address = v["participantAddress"].as_str().unwrap_or_default();
    let Some((side, p)) = participant(st.plan, address, st.country_code) else {
        return Reading::Ignored;
    };
    let number = p.number.as_str();
    let of_p = || {
        st.legs
            .iter()
            .filter(|l| l.side == side && l.number.as_deref() == Some(number))
    };
    let open = of_p().find(|l| !l.state.is_terminal());
    let (attempt, was) = match open {
        Some(l) => (l.attempt, Some(l.state)),
        // Its tries are all heard: this is one of them again.
        None if of_p().count() > usize::from(p.retries) => return Reading::Heard,
        None => {
            let last = st
                .legs
                .iter()
                .filter(|l| l.side == side)
                .map(|l| l.attempt)
                .max()
                .unwrap_or(0);
            (last.saturating_add(1), None)
        }
    };
    let leg = Leg {
        side,
        attempt,
        number: Some(number.to_string()),
    };
    match (name, was) {
        ("Ringing", None | Some(LegState::Created)) => Reading::Event(Event::Ringing(leg)),
        ("Ringing", Some(_)) | ("Answered", Some(LegState::Answered)) => Reading::Heard,
        ("Answered", _) => Reading::Event(Event::Answered(leg)),
        _ => {
            let answered = was == Some(LegState::Answered);
            Reading::Event(Event::Ended {
                outcome: outcome_of(cause_of(&v["metaData"]["causeCode"])),
                last: st.ends_call(side, attempt, answered, was.is_none()),
                leg,
            })
        }
    }
}

/// What became of one real-time event: the call's state before it, what the
/// event means, and the states what it brought moved the call to.
pub struct Taken {
    pub state: CallState,
    pub reading: Reading,
    pub states: Vec<CallState>,
}

/// Takes Airtel real-time event `v` into call `id`, placed by `plan`, at `at`:
/// read against the call's legs and applied in the same write, so that two
/// events at once number their legs one after the other. An ended call takes
/// nothing. `None` when there is no such call.
pub fn take_event(
    c: &rusqlite::Connection,
    id: CallId,
    v: &Value,
    plan: &CallPlan,
    country_code: &str,
    at: i64,
) -> rusqlite::Result<Option<Taken>> {
    let Some((state, legs)) = calls::snapshot(c, id)? else {
        return Ok(None);
    };
    let st = Standing {
        plan,
        state,
        legs: &legs,
        country_code,
    };
    let reading = event_events(v, &st);
    let states = match &reading {
        Reading::Event(e) if !state.is_terminal() => {
            let detail = match e {
                Event::Ended { .. } => cause_detail(&v["metaData"]),
                _ => None,
            };
            calls::apply(c, id, &[(e.clone(), detail.as_deref())], at)?
        }
        _ => Vec::new(),
    };
    Ok(Some(Taken {
        state,
        reading,
        states,
    }))
}

/// One participant of an Airtel CDR, as c2cd follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrLeg {
    pub leg: Leg,
    pub answered: bool,
    /// How it ended.
    pub outcome: LegOutcome,
    /// Its cause, in Airtel's words, for the event that ends it.
    pub detail: String,
}

/// An Airtel CDR: the seed says one comes after the call, with the recording's
/// URL, but shows none. c2cd reads the one its own Airtel front door sends
/// (README, "The Airtel dialect"): `eventType` `CDR`, `callStatus`, and
/// `participants`, each with `participantAddress`, `leg` (`from`, `to`),
/// `attempt`, `status`, `answerTime` and `causeCode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    /// `callStatus`, as given (`COMPLETED`, `FAILED`, …).
    pub status: String,
    /// A's participants, then B's, each side by attempt.
    pub legs: Vec<CdrLeg>,
}

/// Whether an Airtel callback is its CDR rather than a real-time event.
pub fn is_cdr(v: &Value) -> bool {
    v["eventType"] == "CDR"
}

/// The CDR in `v` for a call placed by `plan`; numbers are made E.164 with
/// `country_code`. A participant's side is its `leg`, else the side of the
/// plan's participant its address names; one of neither side is not c2cd's.
/// A participant without an `attempt` is its side's next.
pub fn read_cdr(v: &Value, plan: &CallPlan, country_code: &str) -> Cdr {
    let mut legs: Vec<CdrLeg> = Vec::new();
    for p in v["participants"].as_array().into_iter().flatten() {
        let address = p["participantAddress"].as_str().unwrap_or_default();
        let known = participant(plan, address, country_code);
        let side = match (p["leg"].as_str(), known) {
            (Some("from"), _) => Side::A,
            (Some("to"), _) => Side::B,
            (_, Some((side, _))) => side,
            _ => continue,
        };
        let number = match known {
            Some((_, p)) => Some(p.number.as_str().to_string()),
            None => {
                let t = address_ten(address, country_code);
                (t.len() == 10 && t.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| format!("+{country_code}{t}"))
            }
        };
        let heard = legs.iter().filter(|l| l.leg.side == side).count();
        let attempt = p["attempt"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| u16::try_from(heard + 1).unwrap_or(u16::MAX));
        let status = p["status"].as_str().unwrap_or_default();
        let answered =
            p["answerTime"].as_str().is_some_and(|t| !t.is_empty()) || status == "COMPLETED";
        let cause = cause_of(&p["causeCode"]);
        let outcome = match (cause, status) {
            (Some(_), _) => outcome_of(cause),
            (None, "BUSY") => LegOutcome::Busy,
            (None, "NO_ANSWER") => LegOutcome::NoAnswer,
            (None, "FAILED") => LegOutcome::Failed,
            (None, _) => LegOutcome::Normal,
        };
        let detail = match cause_detail(p) {
            Some(d) => format!("Airtel's CDR: {status}, {d}"),
            None => format!("Airtel's CDR: {status}"),
        };
        legs.push(CdrLeg {
            leg: Leg {
                side,
                attempt,
                number,
            },
            answered,
            outcome,
            detail,
        });
    }
    legs.sort_by_key(|l| (l.leg.side == Side::B, l.leg.attempt));
    Cdr {
        status: v["callStatus"].as_str().unwrap_or_default().to_string(),
        legs,
    }
}

/// How far a call in `state` has gone: A rung, A answered, B rung, bridged;
/// an ended call is past everything.
fn progress(state: CallState) -> u8 {
    match state {
        CallState::Requested | CallState::Originating | CallState::Accepted => 0,
        CallState::DialingA => 1,
        CallState::AAnswered => 2,
        CallState::DialingB => 3,
        CallState::Bridged => 4,
        _ => 6,
    }
}

impl Cdr {
    /// The whole call as the CDR tells it, each event with how far the call
    /// has gone once it happened (see [`progress`]; 5 ends the call) and its
    /// detail: A's tries that did not win, A's answer, B's tries that did not
    /// win, B's answer and the bridge, and the end. `legs` are the CDR's,
    /// A's then B's, each side by attempt.
    fn story(legs: &[CdrLeg]) -> Vec<(Event, u8, String)> {
        let all = legs;
        let mut out = Vec::new();
        let mut ended_by = None;
        for side in [Side::A, Side::B] {
            let legs: Vec<&CdrLeg> = all.iter().filter(|l| l.leg.side == side).collect();
            let won = legs.iter().copied().find(|l| l.answered);
            let (rung, answered) = match side {
                Side::A => (1, 2),
                Side::B => (3, 3),
            };
            let last = legs.last().copied();
            for l in &legs {
                let is_final = won.is_none() && last == Some(*l);
                if Some(*l) == won || is_final {
                    continue;
                }
                out.push((Event::Ringing(l.leg.clone()), rung, l.detail.clone()));
                let end = Event::Ended {
                    leg: l.leg.clone(),
                    outcome: l.outcome,
                    last: false,
                };
                out.push((end, rung, l.detail.clone()));
            }
            match (won, last) {
                (Some(w), _) => {
                    out.push((Event::Ringing(w.leg.clone()), rung, w.detail.clone()));
                    out.push((Event::Answered(w.leg.clone()), answered, w.detail.clone()));
                    if side == Side::A {
                        ended_by = Some(w);
                        continue;
                    }
                    out.push((Event::Bridged, 4, "Airtel's CDR".into()));
                }
                // This side never answered: its last try ends the call.
                (None, Some(l)) => {
                    out.push((Event::Ringing(l.leg.clone()), rung, l.detail.clone()));
                    ended_by = Some(l);
                }
                (None, None) => {}
            }
            if side == Side::A && won.is_none() {
                break;
            }
        }
        if let Some(l) = ended_by {
            let end = Event::Ended {
                leg: l.leg.clone(),
                outcome: l.outcome,
                last: true,
            };
            out.push((end, 5, l.detail.clone()));
        }
        out
    }

    /// The CDR's legs under the attempt numbers the call gave them, A's then
    /// B's, each side by attempt. Both number a side's legs in the order they
    /// started, but the call's events may have missed some or heard parallel
    /// legs start in another order: so the k-th leg of a number on a side is
    /// the call's k-th leg of that number there (a leg without a number, the
    /// one of its attempt), and a leg the call has not heard of takes the
    /// side's next number.
    fn aligned(&self, legs: &[LegView]) -> Vec<CdrLeg> {
        let mut taken = vec![false; legs.len()];
        let mut next = [Side::A, Side::B].map(|side| {
            legs.iter()
                .filter(|l| l.side == side)
                .map(|l| l.attempt)
                .max()
                .unwrap_or(0)
        });
        let mut out = Vec::with_capacity(self.legs.len());
        for c in &self.legs {
            let free = |i: usize, l: &LegView| !taken[i] && l.side == c.leg.side;
            let by_number = legs
                .iter()
                .enumerate()
                .position(|(i, l)| free(i, l) && l.number.is_some() && l.number == c.leg.number);
            let by_attempt = || {
                legs.iter().enumerate().position(|(i, l)| {
                    free(i, l)
                        && l.attempt == c.leg.attempt
                        && (l.number.is_none() || c.leg.number.is_none())
                })
            };
            let mut leg = c.clone();
            match by_number.or_else(by_attempt) {
                Some(i) => {
                    taken[i] = true;
                    leg.leg.attempt = legs[i].attempt;
                }
                None => {
                    let n = &mut next[usize::from(c.leg.side == Side::B)];
                    *n = n.saturating_add(1);
                    leg.leg.attempt = *n;
                }
            }
            out.push(leg);
        }
        out.sort_by_key(|l| (l.leg.side == Side::B, l.leg.attempt));
        out
    }

    /// The events that bring a call in `state` with `legs` to the CDR's end:
    /// the CDR's story (its legs numbered as the call numbered them) less what
    /// the call has gone past or its legs already show, and less what the call
    /// cannot take. The end is never shown: a call that has not ended has not
    /// heard it, though the leg that ends it may have ended (a busy try with a
    /// retry to come that never came). Empty for an ended call, and for one
    /// not yet accepted.
    pub fn events(&self, state: CallState, legs: &[LegView]) -> Vec<(Event, String)> {
        let shown = |e: &Event| {
            if matches!(e, Event::Ended { last: true, .. }) {
                return false;
            }
            let Some(l) = e.leg() else {
                return false;
            };
            let Some(v) = legs
                .iter()
                .find(|v| v.side == l.side && v.attempt == l.attempt)
            else {
                return false;
            };
            match e {
                Event::Ringing(_) => v.state != LegState::Created,
                Event::Answered(_) => matches!(v.state, LegState::Answered | LegState::HungUp),
                _ => v.state.is_terminal(),
            }
        };
        let mut now = state;
        let mut out = Vec::new();
        for (event, stage, detail) in Self::story(&self.aligned(legs)) {
            if stage < progress(now) || shown(&event) {
                continue;
            }
            let Some(to) = next(now, &event) else {
                continue;
            };
            now = to;
            out.push((event, detail));
        }
        out
    }

    /// The state the CDR says the call ended in: completed when B answered,
    /// failed when it did not; `None` when it names no participant of c2cd's.
    pub fn end(&self) -> Option<CallState> {
        if self.legs.is_empty() {
            return None;
        }
        let b_answered = self
            .legs
            .iter()
            .any(|l| l.leg.side == Side::B && l.answered);
        Some(match b_answered {
            true => CallState::Completed,
            false => CallState::Failed,
        })
    }

    /// Whether the CDR tells the end the call recorded.
    pub fn agrees(&self, state: CallState) -> bool {
        self.end() == Some(state) || self.status.eq_ignore_ascii_case(state.as_str())
    }
}

/// Applies Airtel's CDR to call `id`, in one write with reading where the
/// call stands: what it brings is applied (a call whose end event was lost
/// ends with the CDR's causes), the rest was heard already. 200 when something
/// applied, or when the call has ended (a CDR after the end event, or a
/// repeat: logged as agreeing or not, since no retry can change an ended
/// call) or when it names none of the call's participants; 409 while the call
/// cannot take it yet (not accepted), for Airtel to send it again; 503 when it
/// could not be recorded.
async fn apply_cdr(app: &crate::app::App, id: CallId, cdr: Cdr) -> StatusCode {
    let r = app
        .store
        .write(move |c| {
            let Some((state, legs)) = calls::snapshot(c, id)? else {
                return Ok(None);
            };
            let events = cdr.events(state, &legs);
            let kinds: Vec<String> = events.iter().map(|(e, _)| e.kind()).collect();
            let with: Vec<(Event, Option<&str>)> = events
                .iter()
                .map(|(e, d)| (e.clone(), Some(d.as_str())))
                .collect();
            let states = calls::apply(c, id, &with, now_ms())?;
            Ok(Some((state, cdr.clone(), kinds, states)))
        })
        .await;
    match r {
        Ok(None) => StatusCode::NOT_FOUND,
        Ok(Some((_, _, kinds, states))) if !states.is_empty() => {
            log::info!("call {id}: Airtel's CDR applies {}", kinds.join(", "));
            for (kind, state) in kinds.iter().zip(states) {
                log::debug!("call {id}: {kind} -> {state}");
            }
            StatusCode::OK
        }
        Ok(Some((state, cdr, _, _))) if state.is_terminal() => {
            if cdr.agrees(state) {
                log::info!("call {id}: Airtel's CDR agrees with the call's end ({state})");
            } else {
                log::warn!(
                    "call {id}: Airtel's CDR says {:?}, the call ended {state}: the call's record is kept",
                    cdr.status
                );
            }
            StatusCode::OK
        }
        // Nothing to learn from it, now or later.
        Ok(Some((state, cdr, _, _))) if cdr.end().is_none() => {
            log::warn!("call {id}: Airtel's CDR names none of the call's participants ({state})");
            StatusCode::OK
        }
        Ok(Some((state, _, _, _))) => {
            log::info!("call {id}: Airtel's CDR cannot apply to the call yet ({state})");
            StatusCode::CONFLICT
        }
        Err(e) => {
            log::warn!("call {id}: Airtel's CDR not recorded: {e}");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// `POST /callbacks/airtel/<call id>/<sig>`: one of Airtel's real-time
/// events, or its CDR, read against the call's plan.
/// What [`callback`] reads of a body, for a call of two numbers in its
/// first state: for the fuzz target (`crate::fuzz`).
pub fn fuzz_callback(body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let (Ok(a), Ok(b)) = (
        Address::parse("+919810000001"),
        Address::parse("+919810000002"),
    ) else {
        return;
    };
    let plan = CallPlan::simple(a, None, b, None, Duration::ZERO);
    if is_cdr(&v) {
        let _ = read_cdr(&v, &plan, "91");
        return;
    }
    let st = Standing {
        plan: &plan,
        state: CallState::Originating,
        legs: &[],
        country_code: "91",
    };
    let _ = event_events(&v, &st);
}

pub async fn callback(app: &crate::app::App, path: &str, body: Bytes) -> StatusCode {
    let key = |p: &super::Provider| match p {
        super::Provider::Airtel(a) => Some(a.cfg.password.expose().to_string()),
        _ => None,
    };
    let call = match upstream::incoming(app, path, CALLBACK_PATH, key).await {
        Ok(c) => c,
        Err(status) => return status,
    };
    let super::Provider::Airtel(up) = &*call.provider else {
        return StatusCode::NOT_FOUND;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    // A call stored without its plan: its two numbers, each rung once.
    let number = |n: Option<&str>| n.and_then(|n| Address::parse(n).ok());
    let plan = match (
        call.plan,
        number(call.a.as_deref()),
        number(call.b.as_deref()),
    ) {
        (Some(plan), _, _) => plan,
        (None, Some(a), Some(b)) => CallPlan::simple(a, None, b, None, Duration::ZERO),
        _ => return StatusCode::NOT_FOUND,
    };
    let id = call.call_id;
    let country_code = up.cfg.country_code.clone();
    if is_cdr(&v) {
        let cdr = read_cdr(&v, &plan, &country_code);
        return apply_cdr(app, id, cdr).await;
    }
    let what = format!(
        "{} of {}",
        v["event"].as_str().unwrap_or("an event"),
        v["participantAddress"].as_str().unwrap_or("no participant")
    );
    let r = app
        .store
        .write(move |c| take_event(c, id, &v, &plan, &country_code, now_ms()))
        .await;
    match r {
        Ok(None) => StatusCode::NOT_FOUND,
        Ok(Some(t)) => match t.reading {
            Reading::Event(e) => upstream::answer(id, &[e.kind()], Ok((t.states, Some(t.state)))),
            Reading::Heard => {
                log::info!("call {id}: Airtel's {what} was heard already ({})", t.state);
                StatusCode::OK
            }
            Reading::Ignored => StatusCode::OK,
        },
        Err(e) => {
            log::warn!("call {id}: Airtel's {what} not recorded: {e}");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::phone::E164;
    use crate::store::calls::NewCall;
    use rusqlite::Connection;

    /// A participant at +91 and these ten digits, with `retries`.
    fn who(ten: &str, retries: u8) -> Participant {
        Participant {
            number: E164::from_digits(&format!("91{ten}")).unwrap().into(),
            caller_id: None,
            retries,
        }
    }

    fn side(strategy: Strategy, participants: Vec<Participant>) -> SidePlan {
        SidePlan {
            participants,
            strategy,
            caller_id: None,
            ring_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(5),
            start: 0,
        }
    }

    fn plan(a: SidePlan, b: SidePlan) -> CallPlan {
        CallPlan {
            a,
            b,
            time_limit: Duration::from_secs(600),
            record: false,
        }
    }

    /// A [`who`] rung once, alone on its side.
    fn one(ten: &str, retries: u8) -> SidePlan {
        side(Strategy::Sequential, vec![who(ten, retries)])
    }

    /// A call placed by `plan` and accepted, in a database of its own.
    fn placed(plan: &CallPlan) -> (Connection, CallId) {
        let c = crate::store::memory();
        let mut rec = NewCall::for_test(0, 3_600_000);
        rec.set_plan(plan);
        let events = [(Event::Originating, None), (Event::Accepted, None)];
        calls::insert(&c, &rec, &events, None).unwrap();
        (c, rec.id)
    }

    /// An event as the seed shows one: `address` the 10 digits (or "" for
    /// none), `cause` the Q.850 cause of a `Removed`.
    fn ev(address: &str, event: &str, cause: &str) -> Value {
        json!({"eventType": "CALL", "participantAddress": address, "event": event,
            "time": "2026-11-22T10:00:00.000+0000",
            "metaData": {"causeCode": cause, "sipCode": "", "causeCodeDescription": ""}})
    }

    /// How a reading reads in a test: the event's kind, its leg's attempt,
    /// and `last` on an end that ends the call.
    fn said(r: &Reading) -> String {
        match r {
            Reading::Event(e) => {
                let mut s = e.kind();
                if let Some(l) = e.leg() {
                    s = format!("{s} {}", l.attempt);
                }
                if let Event::Ended { last: true, .. } = e {
                    s.push_str(" last");
                }
                s
            }
            Reading::Heard => "heard".into(),
            Reading::Ignored => "ignored".into(),
        }
    }

    /// The call's legs: side and attempt, number (its 10 digits) and state.
    fn legs_of(c: &Connection, id: CallId) -> Vec<String> {
        let (_, legs) = calls::snapshot(c, id).unwrap().unwrap();
        legs.iter()
            .map(|l| {
                let n = l.number.as_deref().unwrap_or_default();
                let ten = n.strip_prefix("+91").unwrap_or(n);
                format!("{}{} {ten} {}", l.side.as_str(), l.attempt, l.state)
            })
            .collect()
    }

    /// Plays Airtel's events into call `id` as its callback takes them: what
    /// each meant, and the state the call is left in.
    fn play(
        c: &Connection,
        id: CallId,
        plan: &CallPlan,
        events: &[Value],
    ) -> (Vec<String>, CallState) {
        let mut out = Vec::new();
        for (i, v) in events.iter().enumerate() {
            let at = 1_000 * (i as i64 + 1);
            let t = take_event(c, id, v, plan, "91", at).unwrap().unwrap();
            out.push(said(&t.reading));
        }
        (out, calls::state(c, id).unwrap().unwrap())
    }

    const A1: &str = "9810000001";
    const A2: &str = "9810000011";
    const B1: &str = "9810000002";
    const B2: &str = "9810000003";

    #[test]
    fn a_busy_a_with_a_retry_to_come_leaves_the_call_dialing_a() {
        let p = plan(one(A1, 1), one(B1, 0));
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[
                ev(A1, "Ringing", ""),
                ev(A1, "Removed", "17"),
                ev(A1, "Ringing", ""),
                // Told twice: the leg already rings.
                ev(A1, "Ringing", ""),
                ev(A1, "Answered", ""),
                ev(B1, "Ringing", ""),
                ev(B1, "Answered", ""),
                ev("", "Merged", ""),
                ev("", "Merged", ""),
                ev(A1, "Removed", "16"),
            ],
        );
        assert_eq!(
            said,
            [
                "a_ringing 1",
                "a_ended_busy 1",
                "a_ringing 2",
                "heard",
                "a_answered 2",
                "b_ringing 1",
                "b_answered 1",
                "bridged",
                "heard",
                "a_ended_normal 2 last"
            ]
        );
        assert_eq!(state, CallState::Completed);
        assert_eq!(
            legs_of(&c, id),
            [
                format!("a1 {A1} busy"),
                format!("a2 {A1} hung_up"),
                format!("b1 {B1} hung_up")
            ]
        );
        // The busy try's detail is Airtel's cause.
        let call = calls::get(&c, &id.to_string()).unwrap().unwrap();
        assert_eq!(call["events"][3]["kind"], "a_ended_busy");
        assert_eq!(call["events"][3]["state"], "dialing_a");
        assert_eq!(
            call["events"][3]["detail"],
            "Airtel causeCode 17: User busy"
        );
    }

    #[test]
    fn a_busy_a_without_a_retry_fails_the_call() {
        let p = plan(one(A1, 0), one(B1, 0));
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[ev(A1, "Ringing", ""), ev(A1, "Removed", "17")],
        );
        assert_eq!(said, ["a_ringing 1", "a_ended_busy 1 last"]);
        assert_eq!(state, CallState::Failed);
    }

    #[test]
    fn tries_that_end_without_ringing_are_legs_of_their_own() {
        let p = plan(one(A1, 1), one(B1, 0));
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[
                ev(A1, "Removed", "17"),
                ev(A1, "Removed", "1"),
                // A third is more than A1 has: a repeat.
                ev(A1, "Removed", "1"),
            ],
        );
        assert_eq!(said, ["a_ended_busy 1", "a_ended_failed 2 last", "heard"]);
        assert_eq!(state, CallState::Failed);
        assert_eq!(
            legs_of(&c, id),
            [format!("a1 {A1} busy"), format!("a2 {A1} failed")]
        );
    }

    #[test]
    fn a_parallel_b_whose_second_participant_answers_completes() {
        let p = plan(
            one(A1, 0),
            side(Strategy::Parallel, vec![who(B1, 0), who(B2, 0)]),
        );
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[
                ev(A1, "Ringing", ""),
                ev(A1, "Answered", ""),
                ev(B1, "Ringing", ""),
                ev(B2, "Ringing", ""),
                ev(B2, "Answered", ""),
                // B1 lost the race: cancelled, and the call goes on.
                ev(B1, "Removed", "16"),
                ev("", "Merged", ""),
                // The answered B hangs up.
                ev(B2, "Removed", "16"),
            ],
        );
        assert_eq!(
            said,
            [
                "a_ringing 1",
                "a_answered 1",
                "b_ringing 1",
                "b_ringing 2",
                "b_answered 2",
                "b_ended_normal 1",
                "bridged",
                "b_ended_normal 2 last"
            ]
        );
        assert_eq!(state, CallState::Completed);
        assert_eq!(
            legs_of(&c, id),
            [
                format!("a1 {A1} hung_up"),
                format!("b1 {B1} cancelled"),
                format!("b2 {B2} hung_up")
            ]
        );
    }

    #[test]
    fn a_parallel_b_fails_once_its_last_leg_ringing_ends() {
        let p = plan(
            one(A1, 0),
            side(Strategy::Parallel, vec![who(B1, 0), who(B2, 0)]),
        );
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[
                ev(A1, "Ringing", ""),
                ev(A1, "Answered", ""),
                ev(B1, "Ringing", ""),
                ev(B2, "Ringing", ""),
                ev(B2, "Removed", "19"),
                ev(B1, "Removed", "17"),
            ],
        );
        assert_eq!(
            &said[2..],
            [
                "b_ringing 1",
                "b_ringing 2",
                "b_ended_no_answer 2",
                "b_ended_busy 1 last"
            ]
        );
        assert_eq!(state, CallState::Failed);
    }

    #[test]
    fn a_sequential_b_tries_its_second_participant_when_the_first_does_not_answer() {
        let p = plan(
            one(A1, 0),
            side(Strategy::Sequential, vec![who(B1, 0), who(B2, 0)]),
        );
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[
                ev(A1, "Ringing", ""),
                ev(A1, "Answered", ""),
                ev(B1, "Ringing", ""),
                ev(B1, "Removed", "19"),
                ev(B2, "Ringing", ""),
                ev(B2, "Answered", ""),
                ev("", "Merged", ""),
                ev(A1, "Removed", "16"),
            ],
        );
        assert_eq!(
            said,
            [
                "a_ringing 1",
                "a_answered 1",
                "b_ringing 1",
                "b_ended_no_answer 1",
                "b_ringing 2",
                "b_answered 2",
                "bridged",
                "a_ended_normal 1 last"
            ]
        );
        assert_eq!(state, CallState::Completed);
        assert_eq!(
            legs_of(&c, id),
            [
                format!("a1 {A1} hung_up"),
                format!("b1 {B1} no_answer"),
                format!("b2 {B2} hung_up")
            ]
        );
    }

    #[test]
    fn a_parallel_a_loser_leaves_the_call_with_the_winner() {
        let p = plan(
            side(Strategy::Parallel, vec![who(A1, 0), who(A2, 0)]),
            one(B1, 0),
        );
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[
                ev(A2, "Ringing", ""),
                ev(A1, "Ringing", ""),
                ev(A1, "Answered", ""),
                ev(A2, "Removed", "16"),
                ev(B1, "Ringing", ""),
            ],
        );
        assert_eq!(
            said,
            [
                "a_ringing 1",
                "a_ringing 2",
                "a_answered 2",
                "a_ended_normal 1",
                "b_ringing 1"
            ]
        );
        assert_eq!(state, CallState::DialingB);
    }

    #[test]
    fn a_b_leg_ends_the_call_once_a_has_left() {
        let p = plan(one(A1, 0), one(B1, 2));
        let view = |side, state| LegView {
            side,
            attempt: 1,
            number: Some(format!("+91{}", if side == Side::A { A1 } else { B1 })),
            state,
            cause: None,
            created_at: 0,
            answered_at: None,
            ended_at: None,
        };
        let read = |a: LegState| {
            let legs = [view(Side::A, a), view(Side::B, LegState::Ringing)];
            let st = Standing {
                plan: &p,
                state: CallState::DialingB,
                legs: &legs,
                country_code: "91",
            };
            said(&event_events(&ev(B1, "Removed", "17"), &st))
        };
        // B1 has two retries to come while A waits; none once A has gone.
        assert_eq!(read(LegState::Answered), "b_ended_busy 1");
        assert_eq!(read(LegState::HungUp), "b_ended_busy 1 last");
    }

    #[test]
    fn events_of_no_participant_and_other_events_are_ignored() {
        let p = plan(one(A1, 0), one(B1, 0));
        let (c, id) = placed(&p);
        let (said, state) = play(
            &c,
            id,
            &p,
            &[
                ev("9999999999", "Ringing", ""),
                ev(A1, "Initiated", ""),
                json!({"eventType": "CALL"}),
                // The country code in front changes nothing.
                ev(&format!("+91{A1}"), "Ringing", ""),
            ],
        );
        assert_eq!(said, ["ignored", "ignored", "ignored", "a_ringing 1"]);
        assert_eq!(state, CallState::DialingA);
    }

    #[test]
    fn an_ended_call_takes_no_event() {
        let p = plan(one(A1, 0), one(B1, 0));
        let (c, id) = placed(&p);
        play(
            &c,
            id,
            &p,
            &[ev(A1, "Ringing", ""), ev(A1, "Removed", "19")],
        );
        let t = take_event(&c, id, &ev(A1, "Answered", ""), &p, "91", 9_000)
            .unwrap()
            .unwrap();
        assert_eq!((t.state, t.states.len()), (CallState::Failed, 0));
        assert_eq!(legs_of(&c, id), [format!("a1 {A1} no_answer")]);
    }

    /// What an answer comes to, as in the Spokn tests.
    fn read(status: u16, body: &Value) -> String {
        crate::provider::upstream::verdict(outcome(status, body.to_string().as_bytes()))
    }

    fn error(code: &str) -> Value {
        json!({"httpStatus": 400, "displayMessage": null, "errorMessage": "m", "errorCode": code,
            "errorType": null, "apiPath": null, "errorDetails": null, "resourceLayer": "CONTROLLER", "errorMeta": null})
    }

    #[test]
    fn every_error_code_of_the_400_has_its_own_result() {
        use About::{Account, Fault, Number, Request};
        use Side::{A, B};
        let table = [
            ("INCORRECT_CALL_FLOW_ID", "incorrect call flow id", Account),
            (
                "CUSTOMER_DETAILS_NOT_AVAILABLE",
                "cpm details not found",
                Account,
            ),
            ("INCORRECT_CUSTOMER_ID", "incorrect customerId", Account),
            ("INVALID_CALLER_ID", "invalid called id", Account),
            ("CALLER_ID_REGEX_ERROR", "caller Id not valid", Account),
            (
                "DUPLICATE_PARTICIPANT_ADDRESS_FOUND",
                "participant address cannot be duplicate",
                Request,
            ),
            (
                "UNABLE_TO_CREATE_SECRET_KEY",
                "unable to create secret key data",
                Fault,
            ),
            (
                "CLICK_TO_CALL_REQUEST_NULL_ERROR",
                "click to call request cannot be null/blank",
                Request,
            ),
            (
                "FROM_BODY_NULL_ERROR",
                "from body cannot be null/blank",
                Request,
            ),
            (
                "TO_BODY_NULL_ERROR",
                "to body cannot be null/blank",
                Request,
            ),
            (
                "CUSTOMER_ID_NULL_ERROR",
                "customerId cannot be null/blank",
                Account,
            ),
            (
                "CALL_FLOW_ID_NULL_ERROR",
                "callflowId cannot be null/blank",
                Account,
            ),
            (
                "ROUNDROBIN_AGENT_ID_MISSING",
                "Agent Pool Id cannot be null/empty in case of Round Robin",
                Request,
            ),
            (
                "ROUNDROBIN_PARTICIPANT_DATA_NOT_ALLOWED",
                "Participant List not allowed in case of Round Robin. Please provide Agent pool Id",
                Request,
            ),
            (
                "FROM_NUMBER_NULL_ERROR",
                "There should be atleast one participant in from",
                Request,
            ),
            (
                "FROM_PARTICIPANT_NUMBER_NULL_ERROR",
                "from participant number null error",
                Number(A),
            ),
            (
                "FROM_PARTICIPANT_NUMBER_REGEX_ERROR",
                "from participant number not valid",
                Number(A),
            ),
            (
                "FROM_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE",
                "Max retries can't be greater than 3",
                Request,
            ),
            ("CALLER_ID_NULL_ERROR", "caller Id required", Account),
            (
                "TO_NUMBER_NULL_ERROR",
                "There should be atleast one participant in to",
                Request,
            ),
            (
                "TO_PARTICIPANT_NUMBER_NULL_ERROR",
                "to participant number null error",
                Number(B),
            ),
            (
                "TO_PARTICIPANT_NUMBER_REGEX_ERROR",
                "to participant number not valid",
                Number(B),
            ),
            (
                "TO_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE",
                "Max retries can't be greater than 3",
                Request,
            ),
            (
                "CONFERENCE_MERGING_STRATEGY_NOT_ALLOWED_FOT_TO_NUMBER",
                "CONFERENCE merging strategy not allowed in toNumber",
                Request,
            ),
            ("AIRTEL_ONLINE_UNCAUGHT_ERROR", "uncaught error", Fault),
        ];
        for (code, meaning, about) in table {
            assert_eq!(error_code(code), Some((meaning, about)), "{code}");
            let Err(ProviderError::Refused(r)) = outcome(400, error(code).to_string().as_bytes())
            else {
                panic!("{code}")
            };
            assert_eq!(r.to_string(), format!("Airtel HTTP 400 {code}: {meaning}"));
            assert_eq!(r.about, about, "{code}");
        }
        assert_eq!(
            read(400, &error("INVALID_CALLER_ID")),
            "Airtel HTTP 400 INVALID_CALLER_ID: invalid called id / Account / next"
        );
        assert_eq!(
            read(400, &error("TO_PARTICIPANT_NUMBER_REGEX_ERROR")),
            "Airtel HTTP 400 TO_PARTICIPANT_NUMBER_REGEX_ERROR: to participant number not valid / Number(B) / final"
        );
        // A code the seed does not list: the server's own message.
        assert_eq!(
            read(400, &error("CALL_TYPE_NOT_SUPPORTED")),
            "Airtel HTTP 400 CALL_TYPE_NOT_SUPPORTED: m / Request / final"
        );
    }

    #[test]
    fn every_status_of_the_glossary_has_its_own_result() {
        let ok = json!({"status": "success", "correlationId": "Xchange123863"});
        for status in [200, 201, 202] {
            assert_eq!(read(status, &ok), "placed");
        }
        assert_eq!(read(200, &json!({"correlationId": "x"})), "placed");
        assert_eq!(
            read(200, &json!({"status": "queued"})),
            "bad response: HTTP 200 without a correlationId"
        );
        let table = [
            (400, "Airtel HTTP 400: Bad request / Request / final"),
            (
                401,
                "Airtel HTTP 401: Authentication failure / Account / next",
            ),
            (403, "Airtel HTTP 403: Forbidden / Account / next"),
            (404, "Airtel HTTP 404: Resource not found / Account / next"),
            (405, "Airtel HTTP 405: Method Not Allowed / Account / next"),
            (409, "Airtel HTTP 409: Conflict / Request / final"),
            (
                412,
                "Airtel HTTP 412: Precondition Failed / Request / final",
            ),
            (
                413,
                "Airtel HTTP 413: Request Entity Too Large / Request / final",
            ),
            (500, "Airtel HTTP 500: Internal Server Error / Fault / next"),
            (501, "Airtel HTTP 501: Not Implemented / Fault / next"),
            (503, "Airtel HTTP 503: Service Unavailable / Fault / next"),
        ];
        for (status, want) in table {
            assert_eq!(read(status, &json!({"message": "Unauthorized"})), want);
        }
        // The seed's 500 body, word for word.
        let uncaught = json!({"httpStatus": 500, "displayMessage": null, "errorMessage": "2",
            "errorCode": "AIRTEL_ONLINE_UNCAUGHT_ERROR", "errorType": null, "apiPath": null,
            "errorDetails": null, "resourceLayer": "UNKNOWN", "errorMeta": null});
        assert_eq!(
            read(500, &uncaught),
            "Airtel HTTP 500 AIRTEL_ONLINE_UNCAUGHT_ERROR: uncaught error / Fault / next"
        );
        // A 5xx is the server's failure whatever code it carries.
        assert_eq!(
            read(503, &error("INVALID_CALLER_ID")).rsplit(" / ").nth(1),
            Some("Fault")
        );
        assert_eq!(
            read(502, &Value::Null),
            "Airtel HTTP 502: server error / Fault / next"
        );
        assert_eq!(
            read(418, &Value::Null),
            "Airtel HTTP 418: not a status Airtel documents / Request / final"
        );
    }

    #[test]
    fn q850_causes_map_to_the_nearest_outcome() {
        let table = [
            (None, LegOutcome::Normal),
            (Some(16), LegOutcome::Normal),
            (Some(31), LegOutcome::Normal),
            (Some(17), LegOutcome::Busy),
            (Some(18), LegOutcome::NoAnswer),
            (Some(19), LegOutcome::NoAnswer),
            (Some(20), LegOutcome::NoAnswer),
            (Some(21), LegOutcome::Rejected),
            (Some(1), LegOutcome::Failed),
            (Some(28), LegOutcome::Failed),
            (Some(34), LegOutcome::Failed),
            (Some(38), LegOutcome::Failed),
            (Some(41), LegOutcome::Failed),
            (Some(42), LegOutcome::Failed),
            (Some(127), LegOutcome::Failed),
        ];
        for (cause, want) in table {
            assert_eq!(outcome_of(cause), want, "{cause:?}");
        }
        assert_eq!(cause_of(&json!("17")), Some(17));
        assert_eq!(cause_of(&json!(17)), Some(17));
        assert_eq!(cause_of(&json!("")), None);
        assert_eq!(
            cause_detail(&json!({"causeCode": "1", "sipCode": "404"})).as_deref(),
            Some("Airtel causeCode 1, sipCode 404: Unallocated (unassigned) number")
        );
    }

    const A: (&str, &str) = ("9810000001", "+919810000001");
    const B: (&str, &str) = ("9810000002", "+919810000002");

    fn cdr(status: &str, participants: Value) -> Cdr {
        let v = json!({"eventType": "CDR", "correlationId": "x", "callStatus": status, "participants": participants});
        assert!(is_cdr(&v));
        read_cdr(&v, &plan(one(A.0, 0), one(B.0, 0)), "91")
    }

    fn part(
        address: &str,
        leg: &str,
        attempt: u16,
        status: &str,
        answered: bool,
        cause: &str,
    ) -> Value {
        json!({"participantAddress": address, "leg": leg, "attempt": attempt, "status": status,
            "answerTime": if answered { json!("2026-11-22T10:00:01.000+0000") } else { Value::Null },
            "causeCode": cause, "sipCode": "200", "causeCodeDescription": "d"})
    }

    fn completed() -> Cdr {
        cdr(
            "COMPLETED",
            json!([
                part(A.0, "from", 1, "COMPLETED", true, "16"),
                part(B.0, "to", 1, "COMPLETED", true, "16")
            ]),
        )
    }

    fn kinds(events: &[(Event, String)]) -> Vec<String> {
        events.iter().map(|(e, _)| e.kind()).collect()
    }

    fn view(side: Side, state: LegState) -> LegView {
        LegView {
            side,
            attempt: 1,
            number: None,
            state,
            cause: None,
            created_at: 0,
            answered_at: None,
            ended_at: None,
        }
    }

    #[test]
    fn a_cdr_tells_the_whole_call_to_one_that_heard_nothing() {
        let c = completed();
        assert_eq!(c.legs.len(), 2);
        assert_eq!(c.legs[0].leg.number.as_deref(), Some(A.1));
        assert_eq!(
            c.legs[0].detail,
            "Airtel's CDR: COMPLETED, Airtel causeCode 16, sipCode 200: d"
        );
        assert_eq!(
            kinds(&c.events(CallState::Accepted, &[])),
            [
                "a_ringing",
                "a_answered",
                "b_ringing",
                "b_answered",
                "bridged",
                "a_ended_normal"
            ]
        );
        assert_eq!(c.end(), Some(CallState::Completed));
        // B busy, tried twice; A answered.
        let busy = cdr(
            "FAILED",
            json!([
                part(A.0, "from", 1, "COMPLETED", true, "16"),
                part(B.0, "to", 1, "BUSY", false, "17"),
                part(B.0, "to", 2, "BUSY", false, "17"),
            ]),
        );
        assert_eq!(
            kinds(&busy.events(CallState::Accepted, &[])),
            [
                "a_ringing",
                "a_answered",
                "b_ringing",
                "b_ended_busy",
                "b_ringing",
                "b_ended_busy"
            ]
        );
        assert_eq!(busy.end(), Some(CallState::Failed));
        // A never answered: B was never called.
        let no_answer = cdr(
            "FAILED",
            json!([part(A.0, "", 1, "NO_ANSWER", false, "19")]),
        );
        assert_eq!(
            kinds(&no_answer.events(CallState::Accepted, &[])),
            ["a_ringing", "a_ended_no_answer"]
        );
    }

    #[test]
    fn a_cdr_brings_only_what_the_call_has_not_heard() {
        let c = completed();
        // The end event was lost: the CDR ends the call.
        let legs = [
            view(Side::A, LegState::Answered),
            view(Side::B, LegState::Answered),
        ];
        let events = c.events(CallState::Bridged, &legs);
        assert_eq!(kinds(&events), ["a_ended_normal"]);
        assert!(events[0].1.starts_with("Airtel's CDR: COMPLETED"));
        // B rang; its answer and the bridge were lost.
        let legs = [
            view(Side::A, LegState::Answered),
            view(Side::B, LegState::Ringing),
        ];
        assert_eq!(
            kinds(&c.events(CallState::DialingB, &legs)),
            ["b_answered", "bridged", "a_ended_normal"]
        );
        // Ended, or not yet accepted: nothing.
        let legs = [
            view(Side::A, LegState::HungUp),
            view(Side::B, LegState::HungUp),
        ];
        assert!(c.events(CallState::Completed, &legs).is_empty());
        assert!(c.events(CallState::Originating, &[]).is_empty());
        // Whether a CDR after the end agrees with it.
        assert!(c.agrees(CallState::Completed));
        assert!(!c.agrees(CallState::Failed));
        assert!(!c.agrees(CallState::Lost));
        assert!(cdr("LOST", json!([])).agrees(CallState::Lost));
        // A participant of neither side is not c2cd's.
        assert!(cdr(
            "COMPLETED",
            json!([part("9999999999", "", 1, "COMPLETED", true, "16")])
        )
        .legs
        .is_empty());
    }

    /// Applies what `cdr` brings to call `id`, as [`apply_cdr`] does: the
    /// kinds applied.
    fn apply_to(c: &Connection, id: CallId, cdr: &Cdr) -> Vec<String> {
        let (state, legs) = calls::snapshot(c, id).unwrap().unwrap();
        let events = cdr.events(state, &legs);
        let with: Vec<(Event, Option<&str>)> = events
            .iter()
            .map(|(e, d)| (e.clone(), Some(d.as_str())))
            .collect();
        let states = calls::apply(c, id, &with, 60_000).unwrap();
        assert_eq!(states.len(), events.len());
        kinds(&events)
    }

    #[test]
    fn a_cdr_ends_a_call_whose_retry_never_came() {
        let p = plan(one(A1, 1), one(B1, 0));
        let (c, id) = placed(&p);
        play(
            &c,
            id,
            &p,
            &[ev(A1, "Ringing", ""), ev(A1, "Removed", "17")],
        );
        assert_eq!(calls::state(&c, id).unwrap(), Some(CallState::DialingA));
        // Airtel gave up after one try: its CDR names it alone.
        let v = json!({"eventType": "CDR", "callStatus": "FAILED",
            "participants": [part(A1, "from", 1, "BUSY", false, "17")]});
        let cdr = read_cdr(&v, &p, "91");
        assert_eq!(apply_to(&c, id, &cdr), ["a_ended_busy"]);
        assert_eq!(calls::state(&c, id).unwrap(), Some(CallState::Failed));
        assert_eq!(legs_of(&c, id), [format!("a1 {A1} busy")]);
    }

    #[test]
    fn a_cdr_and_the_events_name_the_same_legs() {
        let p = plan(
            one(A1, 1),
            side(Strategy::Parallel, vec![who(B1, 0), who(B2, 0)]),
        );
        let (c, id) = placed(&p);
        // B2 was heard ringing before B1; the merge and the end were lost.
        play(
            &c,
            id,
            &p,
            &[
                ev(A1, "Ringing", ""),
                ev(A1, "Removed", "17"),
                ev(A1, "Ringing", ""),
                ev(A1, "Answered", ""),
                ev(B2, "Ringing", ""),
                ev(B1, "Ringing", ""),
                ev(B2, "Answered", ""),
            ],
        );
        let v = json!({"eventType": "CDR", "callStatus": "COMPLETED", "participants": [
            part(A1, "from", 1, "BUSY", false, "17"),
            part(A1, "from", 2, "COMPLETED", true, "16"),
            part(B1, "to", 1, "CANCELLED", false, "16"),
            part(B2, "to", 2, "COMPLETED", true, "16"),
        ]});
        let cdr = read_cdr(&v, &p, "91");
        assert_eq!(
            apply_to(&c, id, &cdr),
            ["b_ended_normal", "bridged", "a_ended_normal"]
        );
        assert_eq!(calls::state(&c, id).unwrap(), Some(CallState::Completed));
        assert_eq!(
            legs_of(&c, id),
            [
                format!("a1 {A1} busy"),
                format!("a2 {A1} hung_up"),
                format!("b1 {B2} hung_up"),
                format!("b2 {B1} cancelled")
            ]
        );
        // Told to a call that heard nothing, the CDR numbers the legs as they
        // started; without `attempt`, in the order listed.
        let v = json!({"eventType": "CDR", "callStatus": "FAILED", "participants": [
            {"participantAddress": A1, "status": "BUSY", "causeCode": "17"},
            {"participantAddress": A1, "status": "NO_ANSWER", "causeCode": "19"},
        ]});
        let (c, id) = placed(&p);
        assert_eq!(
            apply_to(&c, id, &read_cdr(&v, &p, "91")),
            [
                "a_ringing",
                "a_ended_busy",
                "a_ringing",
                "a_ended_no_answer"
            ]
        );
        assert_eq!(
            legs_of(&c, id),
            [format!("a1 {A1} busy"), format!("a2 {A1} no_answer")]
        );
    }
}
