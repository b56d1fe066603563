//! An upstream Airtel click-to-call API (seed 001) as a click-to-call server:
//! the call flow built from the call's plan as the seed shows it, HTTP Basic
//! with the account's credentials, the answer read into a result, and the
//! real-time events Airtel posts back (at `/callbacks/airtel/<call id>/<sig>`)
//! driving the call. The event names are those c2cd's own Airtel front door
//! sends; the seed shows `Removed` with its `metaData` cause.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::spokn::signature;
use super::{upstream, About, Originate, ProviderError, Refusal, Reply};
use crate::config::AirtelUpConfig;
use crate::core::call::{q850_text, Event, Leg, LegOutcome, Side};
use crate::core::plan::{CallPlan, SidePlan, Strategy};
use crate::outbound::HttpClient;

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
        let d = number
            .strip_prefix('+')?
            .strip_prefix(&self.cfg.country_code)?;
        (d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit())).then(|| d.to_string())
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

/// The events one Airtel real-time event means for call `(a, b)` (their
/// 10-digit numbers and E.164 forms); `None` when it says nothing c2cd follows.
pub fn event_events(v: &Value, a: (&str, &str), b: (&str, &str)) -> Option<Vec<Event>> {
    let address = v["participantAddress"].as_str().unwrap_or_default();
    let side = if address == a.0 {
        Side::A
    } else if address == b.0 {
        Side::B
    } else {
        return match v["event"].as_str() {
            Some("Merged") => Some(vec![Event::Bridged]),
            _ => None,
        };
    };
    let number = if side == Side::A { a.1 } else { b.1 };
    let leg = Leg {
        side,
        attempt: 1,
        number: Some(number.to_string()),
    };
    let cause = cause_of(&v["metaData"]["causeCode"]);
    Some(match v["event"].as_str()? {
        "Ringing" => vec![Event::Ringing(leg)],
        "Answered" => vec![Event::Answered(leg)],
        "Merged" => vec![Event::Bridged],
        "Removed" => vec![Event::Ended {
            leg,
            outcome: outcome_of(cause),
            last: true,
        }],
        _ => return None,
    })
}

/// `POST /callbacks/airtel/<call id>/<sig>`: one of Airtel's events.
pub async fn callback(app: &crate::app::App, path: &str, body: Bytes) -> StatusCode {
    let key = |p: &super::Provider| match p {
        super::Provider::Airtel(a) => Some(a.cfg.password.expose().to_string()),
        _ => None,
    };
    let call = match upstream::incoming(app, path, CALLBACK_PATH, key).await {
        Ok(c) => c,
        Err(status) => return status,
    };
    let (Some(a), Some(b)) = (call.a.as_deref(), call.b.as_deref()) else {
        return StatusCode::NOT_FOUND;
    };
    let super::Provider::Airtel(up) = &*call.provider else {
        return StatusCode::NOT_FOUND;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let (ta, tb) = (up.ten(a).unwrap_or_default(), up.ten(b).unwrap_or_default());
    match event_events(&v, (&ta, a), (&tb, b)) {
        Some(events) => {
            let detail = match v["event"].as_str() {
                Some("Removed") => cause_detail(&v["metaData"]),
                _ => None,
            };
            upstream::apply(app, call.call_id, events, detail).await
        }
        None => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airtel_events_map_to_legs_by_address() {
        let a = ("9810000001", "+919810000001");
        let b = ("9810000002", "+919810000002");
        let kinds = |v: Value| {
            event_events(&v, a, b).map(|e| e.iter().map(Event::kind).collect::<Vec<_>>())
        };
        assert_eq!(
            kinds(
                json!({"eventType": "CALL", "participantAddress": "9810000001", "event": "Ringing"})
            ),
            Some(vec!["a_ringing".to_string()])
        );
        let removed = json!({"eventType": "CALL", "participantAddress": "9810000002", "event": "Removed",
            "metaData": {"causeCode": "17", "sipCode": "486", "causeCodeDescription": "User busy"}});
        assert_eq!(kinds(removed), Some(vec!["b_ended_busy".to_string()]));
        assert_eq!(
            kinds(json!({"event": "Initiated", "participantAddress": "9810000001"})),
            None
        );
        assert_eq!(kinds(json!({"eventType": "CDR"})), None);
    }

    /// What an answer comes to, as in the Spokn tests.
    fn read(status: u16, body: &Value) -> String {
        match outcome(status, body.to_string().as_bytes()) {
            Ok(()) => "placed".into(),
            Err(ProviderError::Refused(r)) => format!(
                "{r} / {:?} / {}",
                r.about,
                if r.about.fails_over() {
                    "next"
                } else {
                    "final"
                }
            ),
            Err(e) => e.to_string(),
        }
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
}
