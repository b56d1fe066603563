//! The Spokn front door (seed 002): requests written from the seed, the exact XML
//! answers, every return code, caller-ID propagation, and the per-leg callbacks
//! a real receiver gets.

use base64::Engine;

use crate::common::*;

const USER: &str = "acme";
const PASSWORD: &str = "acme-password-0123456789";
const APARTY: &str = "+18474255380";
const BPARTY: &str = "+14155550123";

/// `acme` (enterprise, calls to +1 at 1.5 cents a minute), `plain` (not
/// enterprise), `upstream` (on an XIP server, which dials no Spokn IDs), and a
/// simulator whose answered calls last a second.
fn config(callback_url: &str) -> String {
    base_config(&format!(
        r#"
[callbacks]
backoff = "20ms"
max_backoff = "100ms"

[spokn]
access_number = "+18005550100"

[[partner]]
id = "acme"
dialects = ["spokn"]
username = "{USER}"
password = "{PASSWORD}"
enterprise = true
provider = "sim"
callback_url = "{callback_url}"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["callback-secret-0123456789"]

[[partner.rate]]
prefix = "+1"
cents_per_minute = 1.5

[[partner.rate]]
prefix = "+1415"
cents_per_minute = 2.25

[[partner]]
id = "plain"
dialects = ["spokn"]
username = "plain"
password = "plain-password-0123456789"
provider = "sim"

[[partner]]
id = "prepaid"
dialects = ["spokn"]
username = "prepaid"
password = "prepaid-password-0123456789"
provider = "sim"
balance = true

[[partner.rate]]
prefix = "+1"
cents_per_minute = 1.5

[[partner]]
id = "upstream"
dialects = ["spokn"]
username = "upstream"
password = "upstream-password-0123456789"
provider = "c2c"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "1s"
busy = ["1555000*"]
no_answer = ["1555001*"]

[[provider]]
name = "c2c"
kind = "xip"
url = "http://127.0.0.1:9/c2c"
secret = "upstream-secret"
timeout = "500ms"
"#
    ))
}

fn call(d: &Daemon, auth: Option<(&str, &str)>, content_type: &str, body: &str) -> Response {
    let auth = auth
        .map(|(u, p)| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {b64}\r\n")
        })
        .unwrap_or_default();
    request(
        d.addr,
        &format!(
            "POST /c2c/1.0/call HTTP/1.1\r\nHost: api.spokn.com\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        f.append_pair(k, v);
    }
    f.finish()
}

fn acme(d: &Daemon, pairs: &[(&str, &str)]) -> Response {
    call(
        d,
        Some((USER, PASSWORD)),
        "application/x-www-form-urlencoded",
        &form(pairs),
    )
}

fn xml(code: u16, desc: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>{code}</code>\n    <desc>{desc}</desc>\n  </c2c>\n</spokn>\n"
    )
}

/// The callbacks of call `id`, as form maps, once `n` have arrived.
fn callbacks(
    rx: &Upstream,
    id: &str,
    n: usize,
    d: &mut Daemon,
) -> Vec<std::collections::HashMap<String, String>> {
    // Each is delivered after the one before it is recorded: wait for the log.
    for _ in 0..n {
        d.wait_log(&format!("for call {id}: delivered"));
    }
    rx.requests()
        .iter()
        .filter(|r| r.header("c2c-event-id").is_some())
        .map(|r| {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/x-www-form-urlencoded")
            );
            form_urlencoded::parse(r.body.as_bytes())
                .into_owned()
                .collect::<std::collections::HashMap<_, _>>()
        })
        .filter(|f| d.call(id)["a"]["number"] == f["aparty"].as_str())
        .collect()
}

#[test]
fn an_answered_call_gets_the_seeds_xml_and_one_callback_per_leg() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&config(&rx.url()));
    let r = acme(
        &d,
        &[
            ("aparty", APARTY),
            ("bparty", BPARTY),
            ("duration", "5"),
            ("token", "crm-7"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), xml(200, "Request Successful"));
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    let id = r.call_id();

    let got = callbacks(&rx, &id, 2, &mut d);
    assert_eq!(got.len(), 2, "{got:?}");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f["leg"], (i + 1).to_string());
        assert_eq!(f["userid"], USER);
        assert_eq!(
            (f["aparty"].as_str(), f["bparty"].as_str()),
            (APARTY, BPARTY)
        );
        assert_eq!(f["token"], "crm-7");
        assert_eq!(f["status"], "0", "{f:?}");
        assert!(
            f["start"].ends_with('Z') && f["start"].contains('T'),
            "{f:?}"
        );
        let secs: u64 = f["duration"].parse().unwrap();
        assert!((1..=3).contains(&secs), "talked a second: {f:?}");
    }
    // The longest prefix wins: +1415 costs 2.25, +1847 1.5, per started minute.
    assert_eq!(
        (got[0]["rate"].as_str(), got[0]["cost"].as_str()),
        ("1.5", "1.5")
    );
    assert_eq!(
        (got[1]["rate"].as_str(), got[1]["cost"].as_str()),
        ("2.25", "2.25")
    );

    // A + that was not percent-encoded arrives as a space, and is read as the +.
    let raw = format!("aparty={APARTY}&bparty={BPARTY}");
    let r = call(
        &d,
        Some((USER, PASSWORD)),
        "application/x-www-form-urlencoded",
        &raw,
    );
    assert_eq!(r.text(), xml(200, "Request Successful"));
    assert_eq!(d.call(&r.call_id())["b"]["number"], BPARTY);

    // Caller IDs: each party sees the other; the call ends in time.
    let c = d.call(&id);
    assert_eq!(
        (c["a"]["caller_id"].as_str(), c["b"]["caller_id"].as_str()),
        (Some(BPARTY), Some(APARTY))
    );
    assert_eq!(c["state"], "completed");
    assert_eq!(c["plan"]["time_limit"], 300);
}

#[test]
fn busy_and_unanswered_legs_are_retried_then_reported() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&config(&rx.url()));
    // A busy aparty, tried three times: one report, for leg 1, busy; bparty never rang.
    let r = acme(
        &d,
        &[
            ("aparty", "+15550001234"),
            ("bparty", BPARTY),
            ("maxretries", "2"),
            ("retrytime", "0"),
        ],
    );
    assert_eq!(r.text(), xml(200, "Request Successful"));
    let id = r.call_id();
    let got = callbacks(&rx, &id, 1, &mut d);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (
            got[0]["leg"].as_str(),
            got[0]["status"].as_str(),
            got[0]["duration"].as_str()
        ),
        ("1", "1", "0")
    );
    let legs = d.call(&id)["legs"].as_array().unwrap().clone();
    assert_eq!(legs.len(), 3, "aparty was tried 1 + 2 times");
    assert!(legs.iter().all(|l| l["state"] == "busy"));

    // An unanswered bparty: aparty answered and hung up (0), bparty no answer (2).
    let r = acme(&d, &[("aparty", APARTY), ("bparty", "+15550011234")]);
    let id = r.call_id();
    let got = callbacks(&rx, &id, 2, &mut d);
    let statuses: Vec<(&str, &str)> = got
        .iter()
        .map(|f| (f["leg"].as_str(), f["status"].as_str()))
        .collect();
    assert_eq!(statuses, [("1", "0"), ("2", "2")]);
    assert_eq!(got[1]["cost"], "0");
}

#[test]
fn caller_ids_follow_the_seed_for_spokn_ids() {
    let d = Daemon::start(&config("http://127.0.0.1:9/cb"));
    // aparty a Spokn ID: bparty is shown the access number...
    let id = acme(&d, &[("aparty", "1234567"), ("bparty", BPARTY)]).call_id();
    let c = d.call(&id);
    assert_eq!(
        (c["a"]["number"].as_str(), c["a"]["caller_id"].as_str()),
        (Some("1234567"), Some(BPARTY))
    );
    assert_eq!(c["b"]["caller_id"], "+18005550100");
    // ...unless bpartycid says otherwise; apartycid may be a Spokn ID with a Spokn ID aparty.
    let id = acme(
        &d,
        &[
            ("aparty", "1234567"),
            ("bparty", BPARTY),
            ("bpartycid", "+16045550000"),
            ("apartycid", "7654321"),
        ],
    )
    .call_id();
    let c = d.call(&id);
    assert_eq!(
        (c["a"]["caller_id"].as_str(), c["b"]["caller_id"].as_str()),
        (Some("7654321"), Some("+16045550000"))
    );
}

#[test]
fn every_return_code_is_answered_as_the_seed_lists_it_and_leaves_a_row() {
    let d = Daemon::start(&config("http://127.0.0.1:9/cb"));
    let ok = [("aparty", APARTY), ("bparty", BPARTY)];
    let long = "t".repeat(129);
    let cases: Vec<(Response, u16, u16)> = vec![
        (
            call(&d, None, "application/x-www-form-urlencoded", &form(&ok)),
            401,
            101,
        ),
        (
            call(
                &d,
                Some((USER, "wrong-password-000000")),
                "application/x-www-form-urlencoded",
                &form(&ok),
            ),
            401,
            101,
        ),
        (
            call(&d, Some((USER, PASSWORD)), "application/json", "{}"),
            415,
            102,
        ),
        (
            acme(
                &d,
                &[("aparty", APARTY), ("bparty", BPARTY), ("duration", "61")],
            ),
            200,
            102,
        ),
        (
            acme(
                &d,
                &[("aparty", APARTY), ("bparty", BPARTY), ("maxretries", "4")],
            ),
            200,
            102,
        ),
        (
            acme(
                &d,
                &[("aparty", APARTY), ("bparty", BPARTY), ("retrytime", "11")],
            ),
            200,
            102,
        ),
        (
            acme(
                &d,
                &[
                    ("aparty", APARTY),
                    ("bparty", BPARTY),
                    ("url", "http://evil.example/cb"),
                ],
            ),
            200,
            102,
        ),
        (
            acme(
                &d,
                &[
                    ("aparty", APARTY),
                    ("bparty", BPARTY),
                    ("apartycid", "1234"),
                ],
            ),
            200,
            102,
        ),
        (
            acme(
                &d,
                &[
                    ("aparty", APARTY),
                    ("aparty", "+16045551234"),
                    ("bparty", BPARTY),
                ],
            ),
            200,
            102,
        ),
        (
            call(
                &d,
                Some(("plain", "plain-password-0123456789")),
                "application/x-www-form-urlencoded",
                &form(&[
                    ("aparty", APARTY),
                    ("bparty", BPARTY),
                    ("url", "http://127.0.0.1:9/cb"),
                ]),
            ),
            200,
            102,
        ),
        (acme(&d, &[("bparty", BPARTY)]), 200, 103),
        (
            acme(&d, &[("aparty", "+1847-425"), ("bparty", BPARTY)]),
            200,
            103,
        ),
        (acme(&d, &[("aparty", APARTY), ("bparty", "+0")]), 200, 104),
        (
            call(
                &d,
                Some(("upstream", "upstream-password-0123456789")),
                "application/x-www-form-urlencoded",
                &form(&[("aparty", "1234567"), ("bparty", BPARTY)]),
            ),
            200,
            106,
        ),
        (
            call(
                &d,
                Some(("upstream", "upstream-password-0123456789")),
                "application/x-www-form-urlencoded",
                &form(&[("aparty", APARTY), ("bparty", "7654321")]),
            ),
            200,
            107,
        ),
        (
            acme(
                &d,
                &[("aparty", APARTY), ("bparty", BPARTY), ("token", &long)],
            ),
            200,
            109,
        ),
    ];
    let descs = [
        (101, "Authentication failed"),
        (102, "Invalid input parameters"),
        (103, "Bad aparty number"),
        (104, "Bad bparty number"),
        (106, "aparty destination not supported"),
        (107, "bparty destination not supported"),
        (109, "Token length exceeded. Max length is 128 characters."),
    ];
    for (i, (r, status, code)) in cases.iter().enumerate() {
        let desc = descs.iter().find(|(c, _)| c == code).unwrap().1;
        assert_eq!(
            (r.status, r.text()),
            (*status, xml(*code, desc)),
            "case {i}"
        );
        let row = d.call(&r.call_id());
        assert_eq!(
            (row["dialect"].as_str(), row["state"].as_str()),
            (Some("spokn"), Some("rejected")),
            "case {i}"
        );
        assert_eq!(row["result"]["code"], code.to_string().as_str());
    }
    assert!(cases[0]
        .0
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    let wrong = d.call(&cases[1].0.call_id());
    assert!(
        wrong["error"]
            .as_str()
            .unwrap()
            .contains("username \"acme\""),
        "{wrong}"
    );
    assert!(!wrong.to_string().contains("wrong-password"));

    // Anything else under /c2c/ is 404, code 100.
    for raw in [
        "GET /c2c/1.0/call HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "POST /c2c/2.0/call HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let r = request(d.addr, raw);
        assert_eq!((r.status, r.text()), (404, xml(100, "Resource not found")));
    }
}

/// A partner whose credit c2cd holds: its balance must buy a minute of both
/// legs at its rates (1.5 + 1.5 cents), or the call is refused 108.
#[test]
fn a_prepaid_partner_needs_credit_for_a_minute() {
    let mut d = Daemon::start(&config("http://127.0.0.1:9/cb"));
    let prepaid = |d: &Daemon| {
        call(
            d,
            Some(("prepaid", "prepaid-password-0123456789")),
            "application/x-www-form-urlencoded",
            &form(&[("aparty", APARTY), ("bparty", BPARTY)]),
        )
    };
    let r = prepaid(&d);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), xml(108, "Insufficient credits for call"));
    let row = d.call(&r.call_id());
    assert_eq!(row["state"], "rejected");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("buys no minute at 3 cents a minute"),
        "{row}"
    );
    // Two cents do not buy a minute at three; three do.
    let credit = |amount: &str| {
        c2cd_ok([
            "balance".as_ref(),
            "credit".as_ref(),
            "--config".as_ref(),
            d.config.as_os_str(),
            "partner:prepaid".as_ref(),
            amount.as_ref(),
        ])
    };
    credit("0.02");
    assert_eq!(
        prepaid(&d).text(),
        xml(108, "Insufficient credits for call")
    );
    credit("0.01");
    let r = prepaid(&d);
    assert_eq!(r.text(), xml(200, "Request Successful"));
    // The call's cost (a started minute of each leg) is taken when it ends.
    let id = r.call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let shown = c2cd_ok([
        "balance".as_ref(),
        "show".as_ref(),
        "--config".as_ref(),
        d.config.as_os_str(),
        "partner:prepaid".as_ref(),
    ]);
    assert!(shown.starts_with("partner:prepaid: 0.00"), "{shown}");
    assert!(
        shown.contains(&format!("call {id}")) && shown.contains("-0.03"),
        "{shown}"
    );
}
