//! Cloud9 call-back authorisation (seed 004): Cloud9's network asks, by `GET`
//! or `POST` on `[cloud9] path`, whether a mobile subscriber's call back may
//! go ahead, and reads c2cd's `<MOC_response>`. A reply it cannot read drops
//! the call, so every reply is well-formed XML carrying every tag of the seed.
//!
//! Decisions where the seed is silent (also in the README):
//! - The error form (the seed is cut off there) is the whole `<MOC_response>`
//!   with `REQUEST_STATUS` 0, the error display text, `TIMER` 1, and
//!   `<Error_Message>` saying what was wrong; `TRANSACTION_ID` echoes the one
//!   sent, if any. HTTP 400 for a malformed request, 403 for an unknown
//!   carrier or source, 503 when the decision could not be recorded; 200 for
//!   every decision, allowed or not.
//! - A refusal carries `TIMER` 1 (the seed's range is 1–60) and an empty
//!   `REROUTE_TO`, as does every reply that does not reroute.
//! - An `OFFLINE` MSRN is refused: the call back cannot reach the subscriber.
//! - Display texts keep only the seed's characters (`0-9 a-z A-Z ' . , < > " ( )`
//!   and spaces; others become spaces) and at most 159 of them.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::config::{Cloud9, Cloud9Action, Cloud9Rule};
use crate::core::money::Money;
use crate::core::{ct_eq, now_ms};
use crate::http::{read_body, BodyError, Resp};
use crate::store::cloud9::{self as store, Decided};

/// The longest display message the seed allows.
pub const MAX_DISPLAY: usize = 159;
/// The longest call, in minutes.
pub const MAX_TIMER: i64 = 60;

/// A display text as the handset may show it.
pub fn sanitise(text: &str) -> String {
    let kept: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "'.,<>\"() ".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    let words: Vec<&str> = kept.split_whitespace().collect();
    words.join(" ").chars().take(MAX_DISPLAY).collect()
}

/// A well-formed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moc {
    pub transaction_id: String,
    pub carrier_id: String,
    /// `+` and digits.
    pub msisdn: String,
    pub destination: String,
    pub user_balance: Money,
    pub iot: bool,
    pub iot_charge: Money,
    /// `None`: OFFLINE.
    pub msrn: Option<String>,
}

/// The variables of a request, each checked; the first problem is the error.
pub fn parse(vars: &[(String, String)]) -> Result<Moc, String> {
    let get = |k: &str| -> Result<Option<&str>, String> {
        let mut found = vars.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.any(|v| Some(v) != first) {
            return Err(format!("{k} is given twice, differently"));
        }
        Ok(first.map(str::trim))
    };
    let need = |k: &str| -> Result<&str, String> {
        get(k)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{k} is missing"))
    };
    let digits = |s: &str, lo: usize, hi: usize| {
        (lo..=hi).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let international = |k: &str, s: &str| -> Result<String, String> {
        match s.strip_prefix('+') {
            Some(d) if digits(d, 6, 15) => Ok(s.to_string()),
            _ => Err(format!(
                "{k} {s:?} is not an international number (+ and 6 to 15 digits)"
            )),
        }
    };
    let amount = |k: &str, s: &str| -> Result<Money, String> {
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        match Money::parse(s) {
            Some(m) if m.0 >= 0 && frac.len() == 2 && !whole.is_empty() => Ok(m),
            _ => Err(format!("{k} {s:?} is not an amount in 0.00 format")),
        }
    };
    let flag = |k: &str| -> Result<bool, String> {
        match need(k)? {
            "0" => Ok(false),
            "1" => Ok(true),
            o => Err(format!("{k} {o:?} is not 0 or 1")),
        }
    };
    let timestamp = need("TIMESTAMP")?;
    if jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", timestamp).is_err() {
        return Err(format!(
            "TIMESTAMP {timestamp:?} is not yyyy-mm-dd HH:mm:ss"
        ));
    }
    let imsi = need("IMSI")?;
    if !digits(imsi, 6, 15) {
        return Err(format!("IMSI {imsi:?} is not 6 to 15 digits"));
    }
    let transaction_id = need("TRANSACTIONID")?;
    if !digits(transaction_id, 1, 20) {
        return Err(format!("TRANSACTIONID {transaction_id:?} is not a number"));
    }
    let carrier_id = need("CARRIERID")?;
    let msisdn = need("MSISDN")?;
    let msisdn = if msisdn.starts_with('+') {
        international("MSISDN", msisdn)?
    } else if digits(msisdn, 6, 15) {
        // Sent without its +: the digits are international all the same.
        format!("+{msisdn}")
    } else {
        return Err(format!("MSISDN {msisdn:?} is not a number"));
    };
    for (k, lo, hi) in [("MCC", 3, 3), ("MNC", 2, 3)] {
        if let Some(v) = get(k)?.filter(|v| !v.is_empty()) {
            if !digits(v, lo, hi) {
                return Err(format!("{k} {v:?} is not {lo} to {hi} digits"));
            }
        }
    }
    if let Some(t) = get("TADIG")?.filter(|v| !v.is_empty()) {
        if t.len() != 5 || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("TADIG {t:?} is not a 5-character network code"));
        }
    }
    let request_type = need("REQUEST_TYPE")?;
    if request_type != "AUTH_CALLBACK_CALL" {
        return Err(format!(
            "REQUEST_TYPE {request_type:?} is not AUTH_CALLBACK_CALL"
        ));
    }
    let destination = international("CALLDESTINATION", need("CALLDESTINATION")?)?;
    let user_balance = amount("USER_BALANCE", need("USER_BALANCE")?)?;
    let iot = flag("IOT")?;
    let iot_charge = amount("IOT_CHARGE", need("IOT_CHARGE")?)?;
    let msrn = match need("MSRN")? {
        "OFFLINE" => None,
        m => Some(international("MSRN", m)?),
    };
    flag("ECC")?;
    Ok(Moc {
        transaction_id: transaction_id.to_string(),
        carrier_id: carrier_id.to_string(),
        msisdn,
        destination,
        user_balance,
        iot,
        iot_charge,
        msrn,
    })
}

/// What c2cd answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reroute_to: Option<String>,
    pub display: String,
    pub timer: i64,
    /// What decided, for the record.
    pub why: String,
}

impl Decision {
    fn deny(display: &str, why: String) -> Decision {
        Decision {
            allowed: false,
            reroute_to: None,
            display: sanitise(display),
            timer: 1,
            why,
        }
    }

    pub fn kind(&self) -> &'static str {
        match (self.allowed, &self.reroute_to) {
            (false, _) => "denied",
            (true, Some(_)) => "rerouted",
            (true, None) => "allowed",
        }
    }
}

/// The rule of `rules` with the longest prefix of `number`.
fn longest<'a>(rules: &'a [Cloud9Rule], number: &str) -> Option<&'a Cloud9Rule> {
    rules
        .iter()
        .filter(|r| number.starts_with(&r.prefix))
        .max_by_key(|r| r.prefix.len())
}

/// The price of a minute to `number`: the longest matching prefix's.
pub fn rate(rates: &[(String, Money)], number: &str) -> Option<Money> {
    crate::core::money::rate_for(rates.iter().map(|(p, m)| (p.as_str(), *m)), number)
}

/// The policy: the subscriber, the destination's rule, then the minutes the
/// balance buys. `held` is the balance c2cd holds for the subscriber.
pub fn decide(cfg: &Cloud9, m: &Moc, held: Money) -> Decision {
    let d = &cfg.display;
    if m.msrn.is_none() {
        return Decision::deny(&d.offline, "MSRN OFFLINE".into());
    }
    let subscriber = cfg.subscribers.iter().find(|s| s.msisdn == m.msisdn);
    match subscriber {
        None if !cfg.any_subscriber => {
            return Decision::deny(&d.denied, format!("{} is not a subscriber", m.msisdn))
        }
        Some(s) if !s.enabled => {
            return Decision::deny(&d.denied, format!("subscriber {} is disabled", m.msisdn))
        }
        _ => {}
    }
    let own = subscriber.and_then(|s| longest(&s.rules, &m.destination));
    let (rule, whose) = match own {
        Some(r) => (Some(r), "subscriber rule"),
        None => (longest(&cfg.rules, &m.destination), "rule"),
    };
    let reroute_to = match rule.map(|r| (&r.action, r.prefix.as_str())) {
        Some((Cloud9Action::Deny, p)) => {
            return Decision::deny(&d.denied, format!("{whose} {p} deny"))
        }
        Some((Cloud9Action::Reroute(to), _)) => Some(to.clone()),
        Some((Cloud9Action::Allow, _)) => None,
        None if !cfg.default_allow => {
            return Decision::deny(&d.denied, "no rule, and default_action deny".into())
        }
        None => None,
    };
    let decided = match rule {
        Some(r) => format!(
            "{whose} {} {}",
            r.prefix,
            if reroute_to.is_some() {
                "reroute"
            } else {
                "allow"
            }
        ),
        None => "default allow".to_string(),
    };
    // Rated where the call goes.
    let to = reroute_to.as_deref().unwrap_or(&m.destination);
    let base = rate(&cfg.rates, to);
    if base.is_none() && cfg.holds_balance {
        return Decision::deny(&d.denied, format!("{decided}; no rate for {to}"));
    }
    let iot = if m.iot {
        m.iot_charge
            .checked_add(cfg.iot_markup)
            .unwrap_or(Money(i64::MAX))
    } else {
        Money::ZERO
    };
    let per_minute = base
        .unwrap_or(Money::ZERO)
        .checked_add(iot)
        .unwrap_or(Money(i64::MAX));
    let (balance, whose_balance) = if cfg.holds_balance {
        (held, "c2cd's")
    } else {
        (m.user_balance, "USER_BALANCE")
    };
    let timer = match balance.minutes_at(per_minute) {
        None => MAX_TIMER,
        Some(n) if n < 1 => {
            return Decision::deny(
                &d.no_credit,
                format!(
                "{decided}; {whose_balance} balance {balance} buys no minute at {per_minute}/min"
            ),
            )
        }
        Some(n) => n.min(MAX_TIMER),
    };
    Decision {
        allowed: true,
        reroute_to,
        display: sanitise(&d.allowed),
        timer,
        why: format!(
            "{decided}; {whose_balance} balance {balance} at {per_minute}/min: {timer} min"
        ),
    }
}

/// The `<MOC_response>`: every tag of the seed, and `<Error_Message>` for the
/// error form.
pub fn reply(transaction_id: Option<&str>, d: &Decision, error: Option<&str>) -> String {
    // Only what XML requires (& < >): quotes and apostrophes stay as the
    // handset is to show them.
    use quick_xml::escape::partial_escape as escape;
    let tx: String = transaction_id
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MOC_response>\n<TRANSACTION_ID>{}</TRANSACTION_ID>\n<REQUEST_STATUS>{}</REQUEST_STATUS>\n<ROUTING>{}</ROUTING>\n<REROUTE_TO>{}</REROUTE_TO>\n<DISPLAY_MESSAGE>{}</DISPLAY_MESSAGE>\n<TIMER>{}</TIMER>\n",
        escape(tx.as_str()),
        u8::from(d.allowed),
        u8::from(d.allowed && d.reroute_to.is_some()),
        escape(d.reroute_to.as_deref().unwrap_or_default()),
        escape(d.display.as_str()),
        d.timer.clamp(1, MAX_TIMER),
    );
    if let Some(e) = error {
        x.push_str(&format!("<Error_Message>{}</Error_Message>\n", escape(e)));
    }
    x.push_str("</MOC_response>\n");
    x
}

fn answer(status: StatusCode, xml: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(xml)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

/// Whether `ip` is in `(net, len)`.
fn within(ip: std::net::IpAddr, (net, len): (std::net::IpAddr, u8)) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| within(a.into(), (net, len))),
        _ => false,
    }
}

/// `GET` or `POST` on `[cloud9] path`.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Resp {
    let rt = app.runtime();
    let cfg = rt.config.cloud9.clone();
    let limits = (
        rt.config.server.max_body_bytes,
        rt.config.server.body_read_timeout,
    );
    let auth_limits = rt.config.guard.auth;
    drop(rt);
    // SECURITY: the CARRIERID is a credential; a source that guesses too
    // many is refused for a while, right or wrong.
    let locked = app.lockout.check(&auth_limits, remote.ip(), None).err();
    let method = req.method().clone();
    let mut vars: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let mut refused: Option<(StatusCode, String)> = None;
    if method == Method::POST {
        match read_body(req, limits.0, limits.1).await {
            Ok(b) => vars.extend(form_urlencoded::parse(&b).into_owned()),
            Err(BodyError::TooLarge) => {
                refused = Some((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request is too large".into(),
                ))
            }
            Err(e) => refused = Some((StatusCode::BAD_REQUEST, format!("the body: {e:?}"))),
        }
    } else if method != Method::GET {
        refused = Some((
            StatusCode::METHOD_NOT_ALLOWED,
            "GET or POST the variables".into(),
        ));
    }
    let transaction_id = vars
        .iter()
        .find(|(k, _)| k == "TRANSACTIONID")
        .map(|(_, v)| v.trim().to_string());
    let mut d = Decided {
        received_at: now_ms(),
        remote_addr: Some(remote.to_string()),
        method: method.to_string(),
        // The CARRIERID is a credential: not kept. Nor more than 4 KiB of what
        // anyone sends.
        received: {
            let mut r = serde_json::Value::Object(
                vars.iter()
                    .map(|(k, v)| {
                        let v = if k == "CARRIERID" {
                            "(not kept)"
                        } else {
                            v.as_str()
                        };
                        (
                            k.clone(),
                            serde_json::Value::String(v.chars().take(256).collect()),
                        )
                    })
                    .collect(),
            )
            .to_string();
            if r.len() > 4096 {
                r = serde_json::json!({ "truncated": r.chars().take(4000).collect::<String>() })
                    .to_string();
            }
            r
        },
        transaction_id: transaction_id.clone(),
        ..Decided::default()
    };
    if let (None, Some(l)) = (&refused, locked) {
        refused = Some((StatusCode::TOO_MANY_REQUESTS, l.detail()));
    }
    let source_ok = cfg.sources.is_empty() || cfg.sources.iter().any(|n| within(remote.ip(), *n));
    if refused.is_none() && !source_ok {
        refused = Some((
            StatusCode::FORBIDDEN,
            format!("requests from {} are not accepted", remote.ip()),
        ));
    }
    let moc = match refused {
        Some(r) => Err(r),
        None => parse(&vars).map_err(|e| (StatusCode::BAD_REQUEST, e)),
    };
    let moc = moc.and_then(|m| {
        // The carrier ID is its credential: compared in constant time.
        let known = cfg.carrier_ids.iter().fold(false, |hit, c| {
            ct_eq(c.expose().as_bytes(), m.carrier_id.as_bytes()) | hit
        });
        if known {
            Ok(m)
        } else {
            app.lockout.failed(&auth_limits, remote.ip(), None);
            Err((StatusCode::FORBIDDEN, "unknown CARRIERID".to_string()))
        }
    });
    let m = match moc {
        Ok(m) => m,
        Err((status, why)) => {
            let decision = Decision::deny(&cfg.display.error, why.clone());
            d.decision = "error";
            d.rule = why.clone();
            d.timer = None;
            d.status = status.as_u16();
            d.reply = reply(transaction_id.as_deref(), &decision, Some(&why));
            let xml = d.reply.clone();
            if let Err(e) = app.store.write(move |c| store::record(c, &d)).await {
                log::error!("cloud9: cannot record a refused request: {e}");
            }
            log::debug!("cloud9: {}: {why}", status.as_u16());
            let mut r = answer(status, xml);
            if let Some(l) = locked.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
                super::stop_headers(&mut r, Some(&crate::guard::Stop::locked(&l)));
            }
            return r;
        }
    };
    d.carrier_id = Some(m.carrier_id.clone());
    d.msisdn = Some(m.msisdn.clone());
    d.destination = Some(m.destination.clone());
    let error_display = cfg.display.error.clone();
    // Decided in the writer's transaction: the balance read is the one recorded.
    let decided = app
        .store
        .write(move |c| {
            let held = if cfg.holds_balance {
                store::balance(c, &m.msisdn)?
            } else {
                Money::ZERO
            };
            let decision = decide(&cfg, &m, held);
            d.decision = decision.kind();
            d.rule = decision.why.clone();
            d.timer = Some(decision.timer);
            d.status = 200;
            d.reply = reply(Some(&m.transaction_id), &decision, None);
            store::record(c, &d)?;
            Ok((d.reply.clone(), decision))
        })
        .await;
    match decided {
        Ok((xml, decision)) => {
            log::debug!("cloud9: {}: {}", decision.kind(), decision.why);
            answer(StatusCode::OK, xml)
        }
        Err(e) => {
            // Not recorded, not allowed.
            log::error!("cloud9: cannot record a decision: {e}");
            let why = "the decision could not be recorded";
            let decision = Decision::deny(&error_display, why.into());
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                reply(transaction_id.as_deref(), &decision, Some(why)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_texts_keep_the_seeds_characters() {
        assert_eq!(sanitise("Connecting your call"), "Connecting your call");
        assert_eq!(
            sanitise("Credit: £0.05 — call +44 now! <ok> \"quoted\" (it's)"),
            "Credit 0.05 call 44 now <ok> \"quoted\" (it's)"
        );
        assert_eq!(sanitise(&"x".repeat(400)).len(), MAX_DISPLAY);
        assert_eq!(sanitise("\n\t"), "");
    }

    #[test]
    fn sources_match_their_blocks() {
        let net = |s: &str, l| (s.parse().unwrap(), l);
        assert!(within("10.1.2.3".parse().unwrap(), net("10.0.0.0", 8)));
        assert!(!within("11.1.2.3".parse().unwrap(), net("10.0.0.0", 8)));
        assert!(within("192.0.2.7".parse().unwrap(), net("192.0.2.7", 32)));
        assert!(within("0.0.0.1".parse().unwrap(), net("0.0.0.0", 0)));
        assert!(within(
            "::ffff:10.0.0.1".parse().unwrap(),
            net("10.0.0.0", 8)
        ));
        assert!(within(
            "2001:db8::1".parse().unwrap(),
            net("2001:db8::", 32)
        ));
    }
}
