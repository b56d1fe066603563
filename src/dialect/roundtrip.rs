//! RoundTrip v2 sales data (seed 003): `POST /roundtrip`, HTTP Basic auth, an
//! XML `<Call>` in the seed's namespace naming a call by `<ID>` or by ANI,
//! Target and CallStart, with supplemental sales data. The answer is
//! `<ID>call id</ID>`.
//!
//! Decisions where the seed is silent (also in the README):
//! - Statuses: 200 matched; 400 a payload that is not the seed's (not XML, not
//!   `<Call>` in its namespace, `<ID>` with other core data, missing core data,
//!   a CallStart without its offset, a number that is not NANPA); 401 no or
//!   wrong credentials; 403 credentials without RoundTrip access, or a
//!   restricted partner's post for a Target not its own; 404 "Call Not Found";
//!   409 a search whose calls are all matched already; 413 too large; 415 a
//!   Content-Type other than `application/roundtrip.sales` or XML. Error
//!   bodies are `<Error>what was wrong</Error>`.
//! - Numbers are RFC 3966 `tel:` URIs (`tel:3101234567`, `tel:+1-310-123-4567`);
//!   ten digits alone are read too, since the seed's table calls them 10-digit
//!   strings. Only NANPA numbers match.
//! - A blank `<DNIS/>` is no DNIS. A DNIS narrows a search to calls with that
//!   DNIS or none known (c2cd's own calls have none).
//! - The seed's own examples write comments as `<!—-` (an em dash) and close
//!   Appendix A's `<Call>` as `</call>`: both are read as meant.
//! - `rs:Order` (classic form) gives IsSale (it has items), Amount (their
//!   prices added up) and Items; all else is kept as posted.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use quick_xml::events::Event as Xml;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::{basic_credentials, basic_partner_where, BasicError};
use crate::app::App;
use crate::config::RoundTripAccess;
use crate::core::money::Money;
use crate::core::now_ms;
use crate::http::{read_body, BodyError, Resp};
use crate::store::sales::{self, Item, Key, Order, Outcome, Posted};

pub const PATH: &str = "/roundtrip";
/// The namespace of `<Call>` and its core data.
pub const NAMESPACE: &str = "http://www.dial800.com/roundtrip/2011-07-15";
/// The namespace of the classic sales form (`rs:Order`, `rs:Item`).
pub const SALES_NAMESPACE: &str = "http://www.dial800.com/roundtrip-sales/2011-08-04";
/// The media type of the classic form (Appendix B).
pub const CLASSIC: &str = "application/roundtrip.sales";
/// The longest `<ID>` looked up.
const MAX_ID: usize = 64;
/// What is kept of the body of a submission refused before its sender was
/// known.
const UNAUTHENTICATED_BODY: usize = 1024;
/// The most `rs:Item`s an order may have.
const MAX_ITEMS: usize = 1000;

/// A submission's call, and its order if it has the classic form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub call: Core,
    pub order: Option<Order>,
}

/// The core data: which call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Core {
    Id(String),
    Search {
        ani: String,
        target: String,
        dnis: Option<String>,
        start_ms: i64,
    },
}

/// `number` as a NANPA number in E.164 (`+13101234567`): an RFC 3966 `tel:`
/// URI, global (`+1…`) or ten digits, visual separators allowed.
pub fn nanpa(number: &str) -> Result<String, String> {
    let n = number.trim();
    let uri = n
        .get(..4)
        .filter(|s| s.eq_ignore_ascii_case("tel:"))
        .map_or(n, |_| &n[4..]);
    // Parameters (`;ext=`, `;phone-context=`) do not change the number.
    let number_part = uri.split(';').next().unwrap_or_default();
    let global = number_part.starts_with('+');
    let digits: String = number_part
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{number:?} is not a tel: URI"));
    }
    let ten = match (global, digits.len()) {
        (true, 11) if digits.starts_with('1') => &digits[1..],
        (false, 11) if digits.starts_with('1') => &digits[1..],
        (false, 10) => &digits[..],
        _ => {
            return Err(format!(
                "{number:?} is not a NANPA number (only US numbers are matched for now)"
            ))
        }
    };
    if !(b'2'..=b'9').contains(&ten.as_bytes()[0]) {
        return Err(format!("{number:?} is not a NANPA number (area code)"));
    }
    Ok(format!("+1{ten}"))
}

/// An xs:dateTime with its offset (`2010-09-01T09:13:31-07:00`, `…Z`), in unix ms.
pub fn call_start(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let has_offset = s.ends_with('Z')
        || s.len() > 6 && {
            let tail = &s.as_bytes()[s.len() - 6..];
            matches!(tail[0], b'+' | b'-') && tail[3] == b':'
        };
    // hh:mm:ss, seconds included, as xs:dateTime has them.
    let seconds = s
        .split_once('T')
        .is_some_and(|(_, t)| t.len() >= 8 && t.as_bytes()[2] == b':' && t.as_bytes()[5] == b':');
    if !s.contains('T') || !has_offset || !seconds {
        return Err(format!(
            "CallStart {s:?} must be an xs:dateTime with its offset (YYYY-MM-DDThh:mm:ss±hh:mm or …Z)"
        ));
    }
    let t: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("CallStart {s:?} is not an xs:dateTime: {e}"))?;
    Ok(t.as_millisecond())
}

/// An amount like `100.00` in cents.
fn cents(s: &str) -> Option<i64> {
    let s = s.trim();
    let decimals = s.split_once('.').map_or(0, |(_, f)| f.len());
    // Money's ten-thousandths, with at most two decimals: whole cents.
    Money::parse(s)
        .filter(|m| m.0 >= 0 && decimals <= 2)
        .map(|m| m.0 / 100)
}

/// The seed's examples, as they are printed: comments opened with an em dash,
/// and Appendix A's `<Call>` closed as `</call>`.
fn as_meant(body: &str) -> String {
    let mut s = body.replace("<!\u{2014}-", "<!--");
    let trimmed = s.trim_end().len();
    if s[..trimmed].ends_with("</call>") {
        s.replace_range(trimmed - "</call>".len()..trimmed, "</Call>");
    }
    s
}

/// Reads a submission.
pub fn parse(body: &[u8]) -> Result<Submission, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 XML".to_string())?;
    let text = as_meant(text);
    let mut r = NsReader::from_str(&text);
    r.config_mut().trim_text(true);
    let mut depth = 0usize;
    // The core element being read, and the text read into it.
    let mut core: Option<(String, String)> = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut order: Option<Order> = None;
    let mut item: Option<(Option<i64>, String)> = None;
    let mut root_seen = false;
    // Inside an rs:Order (its items are the order's).
    let mut in_order = false;
    loop {
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| format!("the body is not well-formed XML: {e}"))?;
        let in_ns =
            |want: &str| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == want.as_bytes());
        match ev {
            Xml::Start(ref e) | Xml::Empty(ref e) => {
                let empty = matches!(ev, Xml::Empty(_));
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                depth += 1;
                match depth {
                    1 if root_seen => return Err("the body has more than one <Call>".into()),
                    1 => {
                        if local != "Call" || !in_ns(NAMESPACE) {
                            return Err(format!(
                                "the root must be <Call xmlns=\"{NAMESPACE}\">, not <{local}>"
                            ));
                        }
                        root_seen = true;
                    }
                    2 if in_ns(NAMESPACE)
                        && ["ID", "DNIS", "ANI", "Target", "CallStart"]
                            .contains(&local.as_str()) =>
                    {
                        if fields.iter().any(|(k, _)| *k == local) {
                            return Err(format!("<{local}> is given twice"));
                        }
                        core = Some((local, String::new()));
                    }
                    2 if in_ns(SALES_NAMESPACE) && local == "Order" => {
                        in_order = !empty;
                        let o = order.get_or_insert_with(Order::default);
                        if let Some(p) = attr(e, "payment")? {
                            o.payment = Some(p);
                        }
                    }
                    3 if in_ns(SALES_NAMESPACE) && local == "Item" && in_order => {
                        let price = attr(e, "price")?
                            .map(|p| {
                                cents(&p).ok_or_else(|| {
                                    format!("rs:Item price {p:?} is not an amount like 100.00")
                                })
                            })
                            .transpose()?;
                        item = Some((price, String::new()));
                    }
                    _ if core.is_some() => {
                        return Err(format!("<{local}> inside a core element"));
                    }
                    // Supplemental data: kept as posted.
                    _ => {}
                }
                if empty {
                    // An empty element ends here.
                    close(&mut depth, &mut core, &mut fields, &mut item, &mut order)?;
                }
            }
            Xml::Text(t) => {
                let t = t
                    .xml10_content()
                    .map_err(|e| format!("the body is not well-formed XML: {e}"))?;
                if let Some((_, v)) = core.as_mut() {
                    v.push_str(&t);
                } else if let Some((_, v)) = item.as_mut() {
                    v.push_str(&t);
                }
            }
            Xml::GeneralRef(g) => {
                let name = String::from_utf8_lossy(&g).into_owned();
                let c = match g.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => quick_xml::escape::resolve_predefined_entity(&name)
                        .and_then(|s| s.chars().next()),
                };
                // No DTD is read: only XML's own entities, and characters XML allows.
                let Some(c) = c.filter(|c| *c >= ' ' || matches!(c, '\t' | '\n' | '\r')) else {
                    return Err(format!("&{name}; is not a character or entity XML knows"));
                };
                if let Some((_, v)) = core.as_mut() {
                    v.push(c);
                } else if let Some((_, v)) = item.as_mut() {
                    v.push(c);
                }
            }
            Xml::CData(t) => {
                let t = String::from_utf8_lossy(&t).into_owned();
                if let Some((_, v)) = core.as_mut() {
                    v.push_str(&t);
                } else if let Some((_, v)) = item.as_mut() {
                    v.push_str(&t);
                }
            }
            Xml::End(_) => {
                if depth == 2 {
                    in_order = false;
                }
                close(&mut depth, &mut core, &mut fields, &mut item, &mut order)?
            }
            Xml::Eof if depth > 0 => {
                return Err("the body is not well-formed XML: it ends before </Call>".into())
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err("the body has no <Call>".into());
    }
    if let Some(o) = &order {
        if o.items.len() > MAX_ITEMS {
            return Err(format!("rs:Order has more than {MAX_ITEMS} items"));
        }
        if o.amount_cents().is_none() {
            return Err("rs:Order's prices add up to more than an amount can hold".into());
        }
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let call = match get("ID") {
        Some(id) => {
            // Only a blank DNIS may come with it (the seed lets DNIS be blank).
            let sent = |k: &str| fields.iter().any(|(n, _)| n == k);
            if let Some(other) = ["ANI", "Target", "CallStart"]
                .into_iter()
                .find(|k| sent(k))
                .or_else(|| get("DNIS").map(|_| "DNIS"))
            {
                return Err(format!(
                    "<ID> must be sent on its own: <{other}> is not allowed with it"
                ));
            }
            if id.len() > MAX_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("<ID> {id:?} is not a call ID"));
            }
            Core::Id(id.to_string())
        }
        None => {
            let need = |k: &str| {
                get(k).ok_or_else(|| {
                    format!("<{k}> is required when <ID> is not sent (ANI, Target and CallStart)")
                })
            };
            let (ani, target, start) = (need("ANI")?, need("Target")?, need("CallStart")?);
            Core::Search {
                ani: nanpa(ani).map_err(|e| format!("<ANI>: {e}"))?,
                target: nanpa(target).map_err(|e| format!("<Target>: {e}"))?,
                dnis: get("DNIS")
                    .map(nanpa)
                    .transpose()
                    .map_err(|e| format!("<DNIS>: {e}"))?,
                start_ms: call_start(start)?,
            }
        }
    };
    Ok(Submission { call, order })
}

/// An element ends: a core element's text is kept, an item joins the order.
fn close(
    depth: &mut usize,
    core: &mut Option<(String, String)>,
    fields: &mut Vec<(String, String)>,
    item: &mut Option<(Option<i64>, String)>,
    order: &mut Option<Order>,
) -> Result<(), String> {
    match *depth {
        2 => {
            if let Some(c) = core.take() {
                fields.push(c);
            }
        }
        3 => {
            if let (Some((price, name)), Some(o)) = (item.take(), order.as_mut()) {
                let name = name.trim().to_string();
                let price_cents = price.ok_or_else(|| format!("rs:Item {name:?} has no price"))?;
                o.items.push(Item { name, price_cents });
            }
        }
        _ => {}
    }
    *depth = depth.saturating_sub(1);
    Ok(())
}

/// Attribute `name` of `e`, unescaped.
fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|e| format!("the body is not well-formed XML: {e}"))?;
        if a.key.local_name().as_ref() == name.as_bytes() {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("the body is not well-formed XML: {e}"))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// An answer: `<ID>…</ID>` or `<Error>…</Error>`.
fn answer(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    r
}

fn error(status: StatusCode, why: &str) -> Resp {
    let mut r = answer(
        status,
        format!("<Error>{}</Error>\n", quick_xml::escape::escape(why)),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"roundtrip\""),
        );
    }
    r
}

/// `POST /roundtrip`.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Resp {
    if req.method() != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "POST a <Call>");
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let rt = app.runtime();
    let limits = &rt.config.server;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = req.headers().get(AUTHORIZATION).cloned();
    let mut posted = Posted {
        received_at: now_ms(),
        remote_addr: Some(remote.to_string()),
        content_type: content_type.clone(),
        ..Posted::default()
    };
    let refused = match read_body(req, limits.max_body_bytes, limits.body_read_timeout).await {
        Ok(b) => {
            posted.body = b.to_vec();
            None
        }
        Err(BodyError::TooLarge) => Some((
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than server.max_body_bytes".to_string(),
        )),
        Err(BodyError::Timeout) => Some((
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time".to_string(),
        )),
        Err(BodyError::Io(e)) => Some((StatusCode::BAD_REQUEST, format!("the body: {e}"))),
    };
    if let Some((status, why)) = refused {
        return refuse(&app, posted, status, &why).await;
    }
    let with_roundtrip = |p: &crate::config::Partner| p.roundtrip.is_some();
    let partner =
        match basic_partner_where(&app, &rt.config, remote.ip(), auth.as_ref(), with_roundtrip) {
            Ok(p) => p,
            Err(e) => {
                posted.username = basic_credentials(auth.as_ref()).map(|(u, _)| u);
                // Who is not a partner gets a line in the record, not storage.
                posted.body.truncate(UNAUTHENTICATED_BODY);
                let (status, why) = match e {
                    BasicError::Unauthorized => {
                        (StatusCode::UNAUTHORIZED, "no or wrong credentials")
                    }
                    BasicError::Forbidden => (
                        StatusCode::FORBIDDEN,
                        "these credentials have no RoundTrip access (or the partner is disabled)",
                    ),
                    BasicError::Locked(l) => {
                        let mut r =
                            refuse(&app, posted, StatusCode::TOO_MANY_REQUESTS, &l.detail()).await;
                        let stop = crate::guard::Stop::locked(&l);
                        super::stop_headers(&mut r, Some(&stop));
                        return r;
                    }
                };
                return refuse(&app, posted, status, why).await;
            }
        };
    posted.partner_id = Some(partner.id.clone());
    posted.username = partner.username.clone();
    let media = content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    let xml = matches!(
        media.as_deref(),
        Some(CLASSIC | "application/xml" | "text/xml")
    );
    if !xml {
        return refuse(
            &app,
            posted,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/roundtrip.sales (the classic form) or application/xml",
        )
        .await;
    }
    let sub = match parse(&posted.body) {
        Ok(s) => s,
        Err(why) => return refuse(&app, posted, StatusCode::BAD_REQUEST, &why).await,
    };
    posted.order = sub.order;
    let key = match sub.call {
        Core::Id(id) => Key::Id(id),
        Core::Search {
            ani,
            target,
            dnis,
            start_ms,
        } => Key::Search {
            ani,
            target,
            dnis,
            start_ms,
            tolerance_ms: i64::try_from(rt.config.roundtrip.tolerance.as_millis())
                .unwrap_or(i64::MAX),
        },
    };
    let targets = match &partner.roundtrip {
        Some(RoundTripAccess::Restricted(t)) => Some(t.clone()),
        _ => None,
    };
    let partner_id = partner.id.clone();
    drop(rt);
    let outcome = app
        .store
        .write(move |c| sales::submit(c, &posted, &key, targets.as_deref()))
        .await;
    match outcome {
        Ok(Outcome::Matched(id)) => {
            log::debug!("roundtrip: partner {partner_id}: sales data for call {id}");
            answer(StatusCode::OK, format!("<ID>{id}</ID>\n"))
        }
        Ok(o) => {
            let status = StatusCode::from_u16(o.status()).unwrap_or(StatusCode::NOT_FOUND);
            let why = match &o {
                Outcome::NotFound => "Call Not Found".to_string(),
                Outcome::AlreadyMatched(id) => format!(
                    "the call matched ({id}) already has sales data; send <ID> to replace it"
                ),
                _ => "the call's Target is not one of this partner's numbers".to_string(),
            };
            log::debug!(
                "roundtrip: partner {partner_id}: {}: {why}",
                status.as_u16()
            );
            error(status, &why)
        }
        Err(e) => {
            log::error!("roundtrip: cannot record a submission: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the submission could not be recorded; retry",
            )
        }
    }
}

/// Records a refused submission, then answers it.
async fn refuse(app: &App, posted: Posted, status: StatusCode, why: &str) -> Resp {
    let w = why.to_string();
    let code = status.as_u16();
    if let Err(e) = app
        .store
        .write(move |c| sales::refuse(c, &posted, code, &w))
        .await
    {
        log::error!("roundtrip: cannot record a refused submission: {e}");
    }
    log::debug!("roundtrip: {code}: {why}");
    error(status, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_nanpa_tel_uris() {
        for ok in [
            "tel:3101234567",
            "TEL:310-123-4567",
            "tel:+1-310-123-4567",
            "tel:13101234567",
            "3101234567",
            "tel:(310)123.4567;ext=22",
        ] {
            assert_eq!(nanpa(ok).as_deref(), Ok("+13101234567"), "{ok}");
        }
        for bad in [
            "tel:+442071234567",
            "tel:310123456",
            "tel:0101234567",
            "tel:",
            "mailto:x",
            "tel:31012345678",
        ] {
            assert!(nanpa(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn call_start_needs_its_offset() {
        assert_eq!(
            call_start("2010-09-01T09:13:31-07:00"),
            Ok(1_283_357_611_000)
        );
        assert_eq!(call_start("2010-09-01T16:13:31Z"), Ok(1_283_357_611_000));
        assert_eq!(
            call_start("2010-09-01T16:13:31.250Z"),
            Ok(1_283_357_611_250)
        );
        for bad in [
            "2010-09-01T09:13:31",
            "2010-09-01",
            "yesterday",
            "2010-09-01 09:13:31Z",
        ] {
            assert!(call_start(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_seeds_examples_read_as_meant() {
        let ex1 = "<Call xmlns=\"http://www.dial800.com/roundtrip/2011-07-15\">\n    <!\u{2014}- Core Data -->\n    <ID>X089341KJH941KJ2H4O985</ID>\n\n    <!\u{2014}- Supplemental Call Data Should Be Inserted Here -->\n</Call>";
        assert_eq!(
            parse(ex1.as_bytes()).unwrap().call,
            Core::Id("X089341KJH941KJ2H4O985".into())
        );
        let appendix_a = "<Call xmlns=\"http://www.dial800.com/roundtrip/2011-07-15\">\n    <!\u{2014}- Core Data -->\n    <ID>X089341KJH941KJ2H4O985</ID>\n    <DNIS>tel:8005555555</DNIS>\n    <ANI>tel:3105555555</ANI>\n    <Target>tel:3109999999</Target>\n    <CallStart>2011-07-15T01:02:03-08:00</CallStart>\n\n    <!\u{2014}- Supplemental Form-Based Data Should Be Inserted Here -->\n</call>";
        let e = parse(appendix_a.as_bytes()).unwrap_err();
        assert!(e.contains("<ID> must be sent on its own"), "{e}");
        let classic = r#"<?xml version="1.0" encoding="utf-8" ?>
<Call xmlns="http://www.dial800.com/roundtrip/2011-07-15"
      xmlns:rs="http://www.dial800.com/roundtrip-sales/2011-08-04">
     <ANI>tel:3105555555</ANI>
     <Target>tel:3109999999</Target>
     <CallStart>2011-07-15T01:02:03-08:00</CallStart>
     <rs:Order payment="amex">
		<rs:Item price="100.00">OVEN</rs:Item>
		<rs:Item price="100.00">SPK</rs:Item>
		<rs:Item price="59.72">ERK 3 PAY</rs:Item>
      </rs:Order>
</Call>"#;
        let s = parse(classic.as_bytes()).unwrap();
        assert_eq!(
            s.call,
            Core::Search {
                ani: "+13105555555".into(),
                target: "+13109999999".into(),
                dnis: None,
                start_ms: 1_310_720_523_000,
            }
        );
        let o = s.order.unwrap();
        assert_eq!(o.payment.as_deref(), Some("amex"));
        assert!(o.is_sale());
        assert_eq!(o.amount_cents(), Some(25_972));
        assert_eq!(o.items[2].name, "ERK 3 PAY");
    }

    #[test]
    fn what_is_not_the_seeds_is_refused_with_the_reason() {
        let call = |inner: &str| {
            format!("<Call xmlns=\"http://www.dial800.com/roundtrip/2011-07-15\">{inner}</Call>")
        };
        for (body, want) in [
            ("not xml".to_string(), "no <Call>"),
            ("<Call><ID>x</ID></Call>".into(), "the root must be"),
            (call("<ANI>tel:3101234567</ANI>"), "<Target> is required"),
            (call("<ID>a</ID><ID>b</ID>"), "given twice"),
            (call("<ID>a<b/></ID>"), "inside a core element"),
            (
                call("<ANI>tel:3101234567</ANI><Target>tel:8881234567</Target><CallStart>2010-09-01T09:13:31</CallStart>"),
                "with its offset",
            ),
            (
                call("<ANI>tel:+442071234567</ANI><Target>tel:8881234567</Target><CallStart>2010-09-01T09:13:31Z</CallStart>"),
                "<ANI>: \"tel:+442071234567\" is not a NANPA number",
            ),
            (
                call("<ID>a</ID><rs:Order xmlns:rs=\"http://www.dial800.com/roundtrip-sales/2011-08-04\"><rs:Item price=\"ten\">X</rs:Item></rs:Order>"),
                "is not an amount",
            ),
            ("<Call xmlns=\"http://www.dial800.com/roundtrip/2011-07-15\"><ID>x</ID>".into(), "well-formed"),
            (call("<ID>a</ID><ANI/>"), "<ANI> is not allowed with it"),
            (call("<ANI>tel:310&foo;1234567</ANI>"), "&foo; is not a character or entity"),
            (call("<ANI>tel:3101234567&#1;</ANI>"), "&#1; is not a character"),
            (
                call("<ANI>tel:3101234567</ANI><Target>tel:8881234567</Target><CallStart>2010-09-01T09:13Z</CallStart>"),
                "with its offset",
            ),
            (format!("{}{}", call("<ID>a</ID>"), call("<ID>b</ID>")), "more than one <Call>"),
            (
                call("<ID>a</ID><rs:Order xmlns:rs=\"http://www.dial800.com/roundtrip-sales/2011-08-04\"><rs:Item price=\"-1.00\">X</rs:Item></rs:Order>"),
                "is not an amount",
            ),
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        // A blank DNIS is none; with an ID it is no other core data.
        let s = parse(call("<ID>abc</ID><DNIS/>").as_bytes()).unwrap();
        assert_eq!(s.call, Core::Id("abc".into()));
        assert_eq!(s.order, None);
    }
}
