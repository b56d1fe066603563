//! Cloud9 call-back authorisation (seed 004) against the real daemon: the
//! policy (subscribers, destination rules, reroutes), the balance's minutes,
//! IOT, OFFLINE, unknown carriers, every variable missing or malformed, display
//! sanitising, and every reply parsed back as XML with every tag of the seed.

use crate::common::*;

fn config(extra: &str) -> String {
    base_config(&format!(
        r#"
[cloud9]
carrier_ids = ["C9TEST"]
balance_holder = "c2cd"
iot_markup = "0.05"
display_denied = "Call not allowed: sorry £ — call +44 800!"
{extra}

[[cloud9.rate]]
prefix = "+44"
per_minute = "0.10"

[[cloud9.rate]]
prefix = "+1"
per_minute = "0.02"

[[cloud9.rule]]
prefix = "+4490"
action = "deny"

[[cloud9.rule]]
prefix = "+447700900"
action = "reroute"
to = "+441283220000"

[[cloud9.subscriber]]
msisdn = "+447700900123"

[[cloud9.subscriber]]
msisdn = "+447700900999"
enabled = false

[[cloud9.subscriber]]
msisdn = "+447700900555"
[[cloud9.subscriber.rule]]
prefix = "+4490"
action = "allow"
"#
    ))
}

/// A request's variables, in order.
type Vars = Vec<(&'static str, String)>;

/// The seed's variables for a call from `msisdn` to `destination`.
fn vars(msisdn: &str, destination: &str) -> Vars {
    vec![
        ("TIMESTAMP", "2026-11-22 10:15:00".into()),
        ("IMSI", "234180000000001".into()),
        ("TRANSACTIONID", "1002".into()),
        ("CARRIERID", "C9TEST".into()),
        ("MSISDN", msisdn.into()),
        ("MCC", "234".into()),
        ("MNC", "18".into()),
        ("TADIG", "GBWC9".into()),
        ("REQUEST_TYPE", "AUTH_CALLBACK_CALL".into()),
        ("CALLDESTINATION", destination.into()),
        ("USER_BALANCE", "0.00".into()),
        ("IOT", "0".into()),
        ("IOT_CHARGE", "0.00".into()),
        ("MSRN", "+447700900001".into()),
        ("ECC", "1".into()),
    ]
}

fn set(v: &mut [(&'static str, String)], k: &str, value: &str) {
    v.iter_mut().find(|(n, _)| *n == k).unwrap().1 = value.into();
}

fn encode(v: &[(&'static str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(v.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

/// The reply's tags, in order, after checking it parses as XML.
fn tags(r: &Response) -> Vec<(String, String)> {
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    let text = r.text();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut depth = 0;
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("not XML: {e}: {text}"))
        {
            quick_xml::events::Event::Start(e) => {
                depth += 1;
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                if depth == 1 {
                    assert_eq!(name, "MOC_response", "{text}");
                } else {
                    current = Some(name.clone());
                    out.push((name, String::new()));
                }
            }
            quick_xml::events::Event::Text(t) if current.is_some() => {
                out.last_mut()
                    .unwrap()
                    .1
                    .push_str(&t.xml10_content().unwrap());
            }
            quick_xml::events::Event::GeneralRef(g) => {
                let c = quick_xml::escape::resolve_predefined_entity(&String::from_utf8_lossy(&g))
                    .unwrap();
                out.last_mut().unwrap().1.push_str(c);
            }
            quick_xml::events::Event::End(_) => {
                depth -= 1;
                current = None;
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "{text}");
    let names: Vec<&str> = out.iter().take(6).map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "TRANSACTION_ID",
            "REQUEST_STATUS",
            "ROUTING",
            "REROUTE_TO",
            "DISPLAY_MESSAGE",
            "TIMER"
        ],
        "every tag of the seed, in its order: {text}"
    );
    let display = &out[4].1;
    assert!(display.len() <= 159, "{display}");
    assert!(
        display
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "'.,<>\"() ".contains(c)),
        "{display}"
    );
    let timer: i64 = out[5].1.parse().unwrap();
    assert!((1..=60).contains(&timer), "{text}");
    out
}

fn get(d: &Daemon, v: &[(&'static str, String)]) -> Response {
    request(
        d.addr,
        &format!(
            "GET /cloud9/moc?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
            encode(v)
        ),
    )
}

fn post(d: &Daemon, v: &[(&'static str, String)]) -> Response {
    let body = encode(v);
    request(
        d.addr,
        &format!(
            "POST /cloud9/moc HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// `(REQUEST_STATUS, ROUTING, REROUTE_TO, DISPLAY_MESSAGE, TIMER)`.
fn said(r: &Response) -> (String, String, String, String, String) {
    let t = tags(r);
    let v = |i: usize| t[i].1.clone();
    (v(1), v(2), v(3), v(4), v(5))
}

fn credit(d: &Daemon, msisdn: &str, amount: &str) {
    let out = c2cd_ok([
        "balance".as_ref(),
        "credit".as_ref(),
        "--config".as_ref(),
        d.config.as_os_str(),
        msisdn.as_ref(),
        amount.as_ref(),
    ]);
    assert!(out.starts_with(msisdn), "{out}");
}

#[test]
fn calls_are_authorised_by_subscriber_destination_and_balance() {
    let d = Daemon::start(&config(""));
    let sub = "+447700900123";
    let s = |a: &str, b: &str, c: &str, e: &str, f: &str| {
        (
            a.to_string(),
            b.to_string(),
            c.to_string(),
            e.to_string(),
            f.to_string(),
        )
    };
    // No balance held yet: no minute.
    let r = get(&d, &vars(sub, "+441234567890"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        said(&r),
        s("0", "0", "", "Not enough credit for this call", "1")
    );
    assert_eq!(tags(&r)[0].1, "1002", "the TRANSACTIONID echoed");

    // 0.10 buys one minute at 0.10 (the 1-minute edge); 0.09 would buy none.
    credit(&d, sub, "0.10");
    assert_eq!(
        said(&get(&d, &vars(sub, "+441234567890"))),
        s("1", "0", "", "Connecting your call", "1")
    );
    // Six pounds buy sixty minutes (the 60-minute edge); more are capped at 60.
    credit(&d, sub, "5.90");
    assert_eq!(said(&post(&d, &vars(sub, "+441234567890"))).4, "60");
    credit(&d, sub, "100");
    assert_eq!(said(&post(&d, &vars(sub, "+441234567890"))).4, "60");
    // At 0.02 a minute to +1 as well; 5.99 would buy 59 at 0.10.
    let out = c2cd_ok([
        "balance".as_ref(),
        "debit".as_ref(),
        "--config".as_ref(),
        d.config.as_os_str(),
        sub.as_ref(),
        "100.01".as_ref(),
    ]);
    assert!(out.contains("5.99"), "{out}");
    assert_eq!(said(&get(&d, &vars(sub, "+441234567890"))).4, "59");

    // IOT: 0.10 + IOT_CHARGE 0.15 + markup 0.05 = 0.30 a minute: 19 minutes.
    let mut iot = vars(sub, "+441234567890");
    set(&mut iot, "IOT", "1");
    set(&mut iot, "IOT_CHARGE", "0.15");
    assert_eq!(said(&get(&d, &iot)).4, "19");

    // Denied by destination, with the configured text sanitised.
    assert_eq!(
        said(&get(&d, &vars(sub, "+449012345678"))),
        s("0", "0", "", "Call not allowed sorry call 44 800", "1")
    );
    // Rerouted, and rated where it goes.
    assert_eq!(
        said(&get(&d, &vars(sub, "+447700900777"))),
        s("1", "1", "+441283220000", "Connecting your call", "59")
    );
    // A subscriber's own rule comes first; a disabled or unknown one is refused.
    credit(&d, "+447700900555", "1.00");
    assert_eq!(
        said(&get(&d, &vars("+447700900555", "+449012345678"))).0,
        "1"
    );
    assert_eq!(
        said(&get(&d, &vars("+447700900999", "+441234567890"))).0,
        "0"
    );
    assert_eq!(
        said(&get(&d, &vars("+447700900321", "+441234567890"))).0,
        "0"
    );
    // MSISDN sent without its +.
    assert_eq!(
        said(&get(&d, &vars("447700900123", "+441234567890"))).0,
        "1"
    );

    // OFFLINE: the call back cannot reach the subscriber.
    let mut offline = vars(sub, "+441234567890");
    set(&mut offline, "MSRN", "OFFLINE");
    assert_eq!(
        said(&get(&d, &offline)),
        s(
            "0",
            "0",
            "",
            "Your phone cannot be reached for the call back",
            "1"
        )
    );

    // The ledger has each change.
    let ledger = c2cd_ok([
        "balance".as_ref(),
        "show".as_ref(),
        "--config".as_ref(),
        d.config.as_os_str(),
        sub.as_ref(),
    ]);
    assert_eq!(ledger.lines().count(), 5, "{ledger}");
    assert!(ledger.starts_with("+447700900123: 5.99"), "{ledger}");

    // And every decision, with what decided it.
    let list = c2cd_ok([
        "cloud9".as_ref(),
        "list".as_ref(),
        "--config".as_ref(),
        d.config.as_os_str(),
        "--msisdn".as_ref(),
        sub.as_ref(),
        "--limit".as_ref(),
        "3".as_ref(),
    ]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(
        lines[1].contains("denied") && lines[1].contains("MSRN OFFLINE"),
        "{list}"
    );
    assert!(
        lines[3].contains("rerouted") || lines[3].contains("allowed"),
        "{list}"
    );
}

#[test]
fn the_carriers_balance_is_used_when_it_holds_it() {
    let d = Daemon::start(
        &config("").replace("balance_holder = \"c2cd\"", "balance_holder = \"carrier\""),
    );
    let mut v = vars("+447700900123", "+441234567890");
    set(&mut v, "USER_BALANCE", "2.50");
    assert_eq!(said(&get(&d, &v)).4, "25");
    set(&mut v, "USER_BALANCE", "0.05");
    assert_eq!(said(&get(&d, &v)).0, "0");
}

#[test]
fn malformed_requests_and_unknown_carriers_get_the_error_form() {
    let d = Daemon::start(&config(""));
    let base = vars("+447700900123", "+441234567890");
    let mut cases: Vec<(Vars, u16, String)> = Vec::new();
    // Every variable missing (MCC, MNC and TADIG are "if available").
    for (k, _) in &base {
        if ["MCC", "MNC", "TADIG"].contains(k) {
            continue;
        }
        let v: Vec<_> = base.iter().filter(|(n, _)| n != k).cloned().collect();
        cases.push((v, 400, format!("{k} is missing")));
    }
    // And malformed.
    for (k, bad) in [
        ("TIMESTAMP", "2026-11-22T10:15:00"),
        ("IMSI", "23418x"),
        ("TRANSACTIONID", "abc"),
        ("MSISDN", "07700<9>"),
        ("MCC", "23"),
        ("MNC", "1"),
        ("TADIG", "GB"),
        ("REQUEST_TYPE", "AUTH_OTHER"),
        ("CALLDESTINATION", "07700900123"),
        ("USER_BALANCE", "1.5"),
        ("IOT", "2"),
        ("IOT_CHARGE", "-0.10"),
        ("MSRN", "online"),
        ("ECC", "yes"),
    ] {
        let mut v = base.clone();
        set(&mut v, k, bad);
        cases.push((v, 400, k.to_string()));
    }
    let mut unknown = base.clone();
    set(&mut unknown, "CARRIERID", "C9OTHER");
    cases.push((unknown, 403, "unknown CARRIERID".into()));
    for (v, status, why) in cases {
        let r = get(&d, &v);
        assert_eq!(r.status, status, "{why}: {}", r.text());
        let t = tags(&r);
        assert_eq!(t[1].1, "0", "{why}");
        let error = t
            .iter()
            .find(|(n, _)| n == "Error_Message")
            .map(|(_, e)| e.as_str());
        assert!(
            error.is_some_and(|e| e.contains(&why)),
            "{why}: {}",
            r.text()
        );
        // The TRANSACTION_ID is kept when one was sent.
        let sent = v
            .iter()
            .find(|(k, _)| *k == "TRANSACTIONID")
            .map(|(_, t)| t.as_str());
        assert_eq!(Some(t[0].1.as_str()), sent.or(Some("")), "{why}");
    }
    // Every request is on record with its decision.
    let db = rusqlite::Connection::open(d.db()).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM cloud9_requests WHERE decision = 'error'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 12 + 14 + 1);
}

#[test]
fn sources_narrow_where_carriers_may_ask_from() {
    let d = Daemon::start(&config("sources = [\"192.0.2.0/24\"]"));
    let r = get(&d, &vars("+447700900123", "+441234567890"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("are not accepted"), "{}", r.text());
    // With no carrier configured the endpoint is off.
    let off = Daemon::start(&base_config(""));
    assert_eq!(
        get(&off, &vars("+447700900123", "+441234567890")).status,
        404
    );
}
