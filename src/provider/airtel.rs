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
use super::{upstream, Originate, ProviderError, Reply};
use crate::config::AirtelUpConfig;
use crate::core::call::{Event, Leg, LegOutcome, Side};
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
        let ok = answer.status == 200
            && serde_json::from_slice::<Value>(&answer.body)
                .is_ok_and(|v| v["status"] == "success" || v["correlationId"].is_string());
        Ok(Reply {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
            event: if ok { Event::Accepted } else { Event::Failed },
        })
    }
}

/// The leg outcome of a Q.850 cause Airtel reports.
fn outcome(cause: Option<u16>) -> LegOutcome {
    match cause {
        Some(16) | None => LegOutcome::Normal,
        Some(17) => LegOutcome::Busy,
        Some(18 | 19) => LegOutcome::NoAnswer,
        Some(21) => LegOutcome::Rejected,
        Some(_) => LegOutcome::Failed,
    }
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
    let cause = v["metaData"]["causeCode"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .or_else(|| {
            v["metaData"]["causeCode"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
        });
    Some(match v["event"].as_str()? {
        "Ringing" => vec![Event::Ringing(leg)],
        "Answered" => vec![Event::Answered(leg)],
        "Merged" => vec![Event::Bridged],
        "Removed" => vec![Event::Ended {
            leg,
            outcome: outcome(cause),
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
        Some(events) => upstream::apply(app, call.call_id, events).await,
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
}
