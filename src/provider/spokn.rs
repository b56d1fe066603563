//! An upstream Spokn click-to-call API (seed 002) as a click-to-call server:
//! the request built as the seed shows, HTTP Basic with the account's
//! credentials, the XML answer's `<code>` read into a result; for an
//! enterprise account, Spokn's per-leg callbacks to c2cd drive the call.
//!
//! Callbacks come to `/callbacks/spokn/<call id>/<sig>`, where `sig` is an
//! HMAC-SHA256 of the call id under the account's password: a callback for a
//! call c2cd did not send to this account is refused.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use sha2::Sha256;

use super::{upstream, About, Originate, ProviderError, Refusal, Reply};
use crate::config::SpoknUpConfig;
use crate::core::call::{Event, Leg, LegOutcome, Side};
use crate::outbound::HttpClient;

/// The path Spokn calls back on.
pub const CALLBACK_PATH: &str = "/callbacks/spokn/";

pub struct SpoknUp {
    pub name: String,
    cfg: SpoknUpConfig,
    client: HttpClient,
    /// `[server] public_url`, where Spokn reaches c2cd.
    public_url: String,
}

/// The signature of call `id`'s callback URL under `key`.
pub fn signature(key: &str, id: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `<code>` and `<desc>` of a Spokn XML answer.
pub fn answer(body: &[u8]) -> Option<(u16, String)> {
    let mut r = quick_xml::Reader::from_reader(body);
    let (mut code, mut desc) = (None, String::new());
    let mut inside: Option<&'static str> = None;
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).ok()? {
            quick_xml::events::Event::Start(e) => {
                inside = match e.local_name().as_ref() {
                    b"code" => Some("code"),
                    b"desc" => Some("desc"),
                    _ => None,
                }
            }
            quick_xml::events::Event::Text(t) => {
                let text = String::from_utf8_lossy(t.as_ref()).trim().to_string();
                match inside {
                    Some("code") => code = text.parse().ok(),
                    Some("desc") => desc = text,
                    _ => {}
                }
            }
            quick_xml::events::Event::End(_) => inside = None,
            quick_xml::events::Event::Eof => return code.map(|c| (c, desc)),
            _ => {}
        }
        buf.clear();
    }
}

/// Spokn's return codes (seed 002): what each means and, but for 200, what
/// the refusal is about.
pub fn code(code: u16) -> Option<(&'static str, Option<About>)> {
    Some(match code {
        200 => ("Request successful", None),
        // c2cd's `url` for the provider names no Spokn resource.
        100 => ("Resource not found", Some(About::Account)),
        101 => ("Authentication failed", Some(About::Account)),
        102 => ("Invalid input parameters", Some(About::Request)),
        103 => ("Bad aparty number", Some(About::Number(Side::A))),
        104 => ("Bad bparty number", Some(About::Number(Side::B))),
        // Spokn's billing failed it, not the call.
        105 => ("Unable to fetch credits information", Some(About::Fault)),
        106 => (
            "aparty destination not supported",
            Some(About::Destination(Side::A)),
        ),
        107 => (
            "bparty destination not supported",
            Some(About::Destination(Side::B)),
        ),
        // The account's balance: no call places until it is topped up.
        108 => ("Insufficient credits for call", Some(About::Account)),
        // The token is the call's id, 36 characters: never, unless Spokn changes.
        109 => (
            "Token length exceeded. Max length is 128 characters.",
            Some(About::Request),
        ),
        _ => return None,
    })
}

/// Spokn's HTTP statuses (seed 002), for an answer without a `<code>`.
fn http(status: u16) -> (&'static str, About) {
    match status {
        401 => ("Authentication failed", About::Account),
        404 => ("Resource not found", About::Account),
        // c2cd always sends a form: what answers at `url` is not Spokn's API.
        415 => ("Unsupported Media Type", About::Account),
        500 => ("Internal Server Error", About::Fault),
        s if s >= 500 => ("server error", About::Fault),
        _ => ("not a status Spokn documents", About::Request),
    }
}

/// What Spokn's answer (HTTP `status`, and the XML's `<code>` and `<desc>`)
/// means: `Ok` when the call is placed. The `<code>` decides; without one,
/// the HTTP status. A 2xx without a code, or with 200 beside an error status,
/// may hide a placed call: that is a bad response, which does not fail over.
pub fn outcome(status: u16, answer: Option<(u16, String)>) -> Result<(), ProviderError> {
    let ok = (200..300).contains(&status);
    let refused = |code: String, meaning: &str, about| {
        Err(ProviderError::Refused(Refusal {
            code,
            meaning: meaning.to_string(),
            about,
        }))
    };
    match answer {
        Some((200, _)) if ok => Ok(()),
        Some((200, _)) => Err(ProviderError::BadResponse(format!(
            "HTTP {status} with <code>200</code>"
        ))),
        Some((c, desc)) => match code(c) {
            Some((meaning, Some(about))) => refused(format!("Spokn code {c}"), meaning, about),
            // Not Spokn's (c2cd's own front door answers 500 for its failures):
            // its <desc>, and what its HTTP status says.
            _ => {
                let (said, about) = http(status);
                let meaning = if desc.is_empty() { said } else { &desc };
                refused(format!("Spokn code {c}"), meaning, about)
            }
        },
        None if ok => Err(ProviderError::BadResponse(
            "the answer has no <code>".into(),
        )),
        None => {
            let (meaning, about) = http(status);
            refused(format!("Spokn HTTP {status}"), meaning, about)
        }
    }
}

impl SpoknUp {
    pub fn new(name: &str, cfg: SpoknUpConfig, client: HttpClient, public_url: &str) -> SpoknUp {
        SpoknUp {
            name: name.to_string(),
            cfg,
            client,
            public_url: public_url.to_string(),
        }
    }

    pub fn enterprise(&self) -> bool {
        self.cfg.enterprise
    }

    /// Why Spokn cannot place `plan`: it retries aparty only, one participant a
    /// side, and records nothing.
    pub fn refuses(&self, plan: &crate::core::plan::CallPlan) -> Option<String> {
        let ok = plan.a.participants.len() == 1
            && plan.b.participants.len() == 1
            && plan.b.participants[0].retries == 0
            && plan.a.participants[0].retries <= 3
            && plan.a.retry_delay.as_secs() <= 10
            && !plan.record;
        (!ok).then(|| {
            format!(
                "provider {} (spokn) places one participant a side, aparty retried at most 3 times 10 s apart, without recording",
                self.name
            )
        })
    }

    /// The form fields sent, in the seed's order.
    pub fn params(&self, o: &Originate) -> Vec<(&'static str, String)> {
        let side = |s: &crate::core::plan::SidePlan| {
            s.first()
                .map(|p| p.number.as_str().to_string())
                .unwrap_or_default()
        };
        let minutes = o.plan.time_limit.as_secs().div_ceil(60).clamp(1, 60);
        let mut p = vec![("aparty", side(&o.plan.a)), ("bparty", side(&o.plan.b))];
        if self.cfg.enterprise {
            let cid = |s: &crate::core::plan::SidePlan| {
                s.first()
                    .and_then(|p| s.caller_id_for(p))
                    .map(str::to_string)
            };
            if let Some(c) = cid(&o.plan.a) {
                p.push(("apartycid", c));
            }
            if let Some(c) = cid(&o.plan.b) {
                p.push(("bpartycid", c));
            }
        }
        p.push(("duration", minutes.to_string()));
        p.push(("token", o.call_id.to_string()));
        let retries = o.plan.a.first().map_or(0, |p| p.retries);
        if retries > 0 {
            p.push(("maxretries", retries.to_string()));
            p.push(("retrytime", o.plan.a.retry_delay.as_secs().to_string()));
        }
        if self.cfg.enterprise {
            let id = o.call_id.to_string();
            let sig = signature(self.cfg.password.expose(), &id);
            p.push((
                "url",
                format!("{}{CALLBACK_PATH}{id}/{sig}", self.public_url),
            ));
        }
        p
    }

    pub fn url_string(&self) -> String {
        self.cfg.url.to_string()
    }

    pub async fn originate(
        &self,
        params: Vec<(&'static str, String)>,
    ) -> Result<Reply, ProviderError> {
        let form = {
            let mut f = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &params {
                f.append_pair(k, v);
            }
            f.finish()
        };
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.cfg.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                AUTHORIZATION,
                upstream::basic(&self.cfg.username, self.cfg.password.expose()),
            )
            .header(USER_AGENT, concat!("c2cd/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| ProviderError::BadResponse(format!("cannot build the request: {e}")))?;
        let answer = upstream::exchange(
            &self.client,
            req,
            self.cfg.max_response_bytes,
            self.cfg.timeout,
        )
        .await?;
        outcome(answer.status, self::answer(&answer.body))?;
        let event = match self.cfg.enterprise {
            true => Event::Accepted,
            // Without callbacks nothing more will be heard of the call.
            false => Event::HandedOff,
        };
        Ok(Reply {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
            event,
        })
    }
}

/// Spokn's leg statuses (seed 002): what each means, and how the leg ended
/// (`None`: answered, and hung up normally). Where no outcome is as exact as
/// the status, the event's detail keeps the status and its meaning.
pub fn status(status: &str) -> Option<(&'static str, Option<LegOutcome>)> {
    Some(match status {
        "0" => ("Success", None),
        "1" => ("Number busy", Some(LegOutcome::Busy)),
        "2" => ("No answer", Some(LegOutcome::NoAnswer)),
        // Congestion is Q.850 34's family (34, 38, 41, 42).
        "3" => ("Route congested", Some(LegOutcome::Failed)),
        // Cleared before answer: the leg shows cancelled.
        "4" => ("Call cancelled before answer", Some(LegOutcome::Normal)),
        // Q.850 1 (unallocated number) has no outcome of its own.
        "5" => ("Invalid number", Some(LegOutcome::Failed)),
        "6" => ("Other error", Some(LegOutcome::Failed)),
        // Spokn would not place a second call between the same parties: a
        // refusal (Q.850 21), which says nothing of the party being busy.
        "7" => ("Call already in progress", Some(LegOutcome::Rejected)),
        _ => return None,
    })
}

/// The events a Spokn leg report means. Spokn reports when the call is over:
/// leg 1 (aparty) first, leg 2 (bparty) second.
pub fn report_events(
    leg: &str,
    status: &str,
    a: Option<String>,
    b: Option<String>,
) -> Option<Vec<Event>> {
    let (_, outcome) = self::status(status)?;
    let (side, number) = match leg {
        "1" => (Side::A, a),
        "2" => (Side::B, b),
        _ => return None,
    };
    let l = Leg {
        side,
        attempt: 1,
        number,
    };
    Some(match (side, outcome) {
        (Side::A, None) => vec![Event::Ringing(l.clone()), Event::Answered(l)],
        (Side::B, None) => vec![
            Event::Ringing(l.clone()),
            Event::Answered(l),
            Event::Bridged,
            // The call is over when Spokn reports it.
            Event::Ended {
                leg: Leg::first(Side::A),
                outcome: LegOutcome::Normal,
                last: true,
            },
        ],
        (_, Some(outcome)) => vec![
            Event::Ringing(l.clone()),
            Event::Ended {
                leg: l,
                outcome,
                last: true,
            },
        ],
    })
}

/// `POST /callbacks/spokn/<call id>/<sig>`: one leg's report.
pub async fn callback(app: &crate::app::App, path: &str, body: Bytes) -> StatusCode {
    let key = |p: &super::Provider| match p {
        super::Provider::Spokn(s) => Some(s.cfg.password.expose().to_string()),
        _ => None,
    };
    let call = match upstream::incoming(app, path, CALLBACK_PATH, key).await {
        Ok(c) => c,
        Err(status) => return status,
    };
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let leg = form.get("leg").map(String::as_str).unwrap_or("");
    let status = form.get("status").map(String::as_str).unwrap_or("");
    let (Some(events), Some((meaning, _))) = (
        report_events(leg, status, call.a, call.b),
        self::status(status),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    let detail = format!("Spokn leg {leg} status {status}: {meaning}");
    log::info!("call {}: {detail}", call.call_id);
    upstream::apply(app, call.call_id, events, Some(detail)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_of_an_answer_is_read() {
        let body = br#"<?xml version="1.0"?>
<spokn xmlns="http://api.spokn.com/api/c2c.xsd">
  <c2c version="1.0">
    <code>103</code>
    <desc>Bad aparty number</desc>
  </c2c>
</spokn>"#;
        assert_eq!(answer(body), Some((103, "Bad aparty number".to_string())));
        assert_eq!(answer(b"<html>oops</html>"), None);
    }

    fn xml(code: u16) -> Vec<u8> {
        format!("<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>{code}</code>\n    <desc>d</desc>\n  </c2c>\n</spokn>\n").into_bytes()
    }

    /// What an answer comes to: placed, refused (code, meaning, what about,
    /// whether the next provider is asked), or a bad response.
    fn read(status: u16, body: &[u8]) -> String {
        crate::provider::upstream::verdict(outcome(status, answer(body)))
    }

    #[test]
    fn every_return_code_has_its_own_result() {
        use Side::{A, B};
        let table: [(u16, &str, Option<About>); 11] = [
            (200, "Request successful", None),
            (100, "Resource not found", Some(About::Account)),
            (101, "Authentication failed", Some(About::Account)),
            (102, "Invalid input parameters", Some(About::Request)),
            (103, "Bad aparty number", Some(About::Number(A))),
            (104, "Bad bparty number", Some(About::Number(B))),
            (
                105,
                "Unable to fetch credits information",
                Some(About::Fault),
            ),
            (
                106,
                "aparty destination not supported",
                Some(About::Destination(A)),
            ),
            (
                107,
                "bparty destination not supported",
                Some(About::Destination(B)),
            ),
            (108, "Insufficient credits for call", Some(About::Account)),
            (
                109,
                "Token length exceeded. Max length is 128 characters.",
                Some(About::Request),
            ),
        ];
        for (c, meaning, about) in table {
            assert_eq!(code(c), Some((meaning, about)), "{c}");
            let got = outcome(200, answer(&xml(c)));
            match about {
                None => assert!(got.is_ok(), "{c}"),
                Some(about) => {
                    let Err(ProviderError::Refused(r)) = got else {
                        panic!("{c}: {got:?}")
                    };
                    assert_eq!(r.to_string(), format!("Spokn code {c}: {meaning}"));
                    assert_eq!(r.about, about);
                }
            }
        }
        assert_eq!(code(110), None);
        // Which refusals go to the next provider of the route.
        assert_eq!(
            read(200, &xml(101)),
            "Spokn code 101: Authentication failed / Account / next"
        );
        assert_eq!(
            read(200, &xml(103)),
            "Spokn code 103: Bad aparty number / Number(A) / final"
        );
        assert_eq!(
            read(200, &xml(105)),
            "Spokn code 105: Unable to fetch credits information / Fault / next"
        );
        assert_eq!(
            read(200, &xml(107)),
            "Spokn code 107: bparty destination not supported / Destination(B) / next"
        );
        assert_eq!(read(200, &xml(109)).rsplit(" / ").next(), Some("final"));
    }

    #[test]
    fn the_http_status_decides_when_there_is_no_code() {
        assert_eq!(
            read(401, b"Unauthorized"),
            "Spokn HTTP 401: Authentication failed / Account / next"
        );
        assert_eq!(
            read(404, b""),
            "Spokn HTTP 404: Resource not found / Account / next"
        );
        assert_eq!(
            read(415, b""),
            "Spokn HTTP 415: Unsupported Media Type / Account / next"
        );
        assert_eq!(
            read(500, b"<html/>"),
            "Spokn HTTP 500: Internal Server Error / Fault / next"
        );
        assert_eq!(
            read(502, b""),
            "Spokn HTTP 502: server error / Fault / next"
        );
        assert_eq!(
            read(418, b""),
            "Spokn HTTP 418: not a status Spokn documents / Request / final"
        );
        // A code with an error status: the code decides.
        assert_eq!(
            read(401, &xml(101)),
            "Spokn code 101: Authentication failed / Account / next"
        );
        // A code the seed lacks (c2cd's own front door fails with 500): its
        // desc, and the status's weight.
        assert_eq!(read(500, &xml(500)), "Spokn code 500: d / Fault / next");
        assert_eq!(read(200, &xml(999)), "Spokn code 999: d / Request / final");
        // What may hide a placed call is a bad response, never a failover.
        assert_eq!(
            read(200, b"<html>oops</html>"),
            "bad response: the answer has no <code>"
        );
        assert_eq!(
            read(500, &xml(200)),
            "bad response: HTTP 500 with <code>200</code>"
        );
        assert_eq!(read(202, &xml(200)), "placed");
    }

    #[test]
    fn every_leg_status_has_its_nearest_outcome() {
        let table = [
            ("0", "Success", None),
            ("1", "Number busy", Some(LegOutcome::Busy)),
            ("2", "No answer", Some(LegOutcome::NoAnswer)),
            ("3", "Route congested", Some(LegOutcome::Failed)),
            (
                "4",
                "Call cancelled before answer",
                Some(LegOutcome::Normal),
            ),
            ("5", "Invalid number", Some(LegOutcome::Failed)),
            ("6", "Other error", Some(LegOutcome::Failed)),
            ("7", "Call already in progress", Some(LegOutcome::Rejected)),
        ];
        for (s, meaning, outcome) in table {
            assert_eq!(status(s), Some((meaning, outcome)), "{s}");
            let events = report_events("2", s, None, None).unwrap();
            let want = match outcome {
                None => "a_ended_normal".to_string(),
                Some(o) => format!("b_ended_{}", o.as_str()),
            };
            assert_eq!(events.last().map(Event::kind), Some(want), "{s}");
        }
        assert_eq!(status("8"), None);
        assert_eq!(
            report_events("1", "7", None, None).unwrap()[1].cause(),
            Some(21)
        );
    }

    #[test]
    fn leg_reports_drive_the_call() {
        let a = Some("+18474255380".to_string());
        let kinds = |e: Vec<Event>| e.iter().map(Event::kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(report_events("1", "0", a.clone(), None).unwrap()),
            ["a_ringing", "a_answered"]
        );
        assert_eq!(
            kinds(report_events("2", "0", None, a.clone()).unwrap()),
            ["b_ringing", "b_answered", "bridged", "a_ended_normal"]
        );
        assert_eq!(
            kinds(report_events("1", "1", a, None).unwrap()),
            ["a_ringing", "a_ended_busy"]
        );
        assert!(report_events("3", "0", None, None).is_none());
        assert!(report_events("1", "9", None, None).is_none());
        assert_eq!(signature("k", "id").len(), 32);
    }
}
