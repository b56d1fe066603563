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

use super::{upstream, Originate, ProviderError, Reply};
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

/// The `<code>` of a Spokn XML answer.
pub fn answer_code(body: &[u8]) -> Option<u16> {
    let mut r = quick_xml::Reader::from_reader(body);
    let mut in_code = false;
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).ok()? {
            quick_xml::events::Event::Start(e) => in_code = e.local_name().as_ref() == b"code",
            quick_xml::events::Event::Text(t) if in_code => {
                return String::from_utf8_lossy(t.as_ref()).trim().parse().ok();
            }
            quick_xml::events::Event::End(_) => in_code = false,
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
        buf.clear();
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
        let code = answer_code(&answer.body);
        if answer.status == 200 && code.is_none() {
            return Err(ProviderError::BadResponse(
                "the answer has no <code>".into(),
            ));
        }
        let event = match (answer.status, code) {
            (200, Some(200)) if self.cfg.enterprise => Event::Accepted,
            // Without callbacks nothing more will be heard of the call.
            (200, Some(200)) => Event::HandedOff,
            _ => Event::Failed,
        };
        Ok(Reply {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
            event,
        })
    }
}

/// The events a Spokn leg report means. Spokn reports when the call is over:
/// leg 1 (aparty) first, leg 2 (bparty) second.
pub fn report_events(
    leg: &str,
    status: &str,
    a: Option<String>,
    b: Option<String>,
) -> Option<Vec<Event>> {
    let outcome = match status {
        "0" => None,
        "1" => Some(LegOutcome::Busy),
        "2" => Some(LegOutcome::NoAnswer),
        "4" => Some(LegOutcome::Normal),
        "3" | "5" | "6" | "7" => Some(LegOutcome::Failed),
        _ => return None,
    };
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
    let Some(events) = report_events(leg, status, call.a, call.b) else {
        return StatusCode::BAD_REQUEST;
    };
    log::info!(
        "call {}: Spokn reports leg {leg} status {status}",
        call.call_id
    );
    upstream::apply(app, call.call_id, events).await
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
        assert_eq!(answer_code(body), Some(103));
        assert_eq!(answer_code(b"<html>oops</html>"), None);
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
