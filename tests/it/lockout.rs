//! Failed authentications lock their source, or the partner they name, out
//! (`[guard] auth_failures_per_source`, `auth_failures_per_partner`): every
//! door counts its own kind of wrong credentials, and every door refuses a
//! locked source with its own code and `Retry-After`, right credentials or
//! not, while the sources a partner authenticated from are still served.

use base64::Engine;

use crate::common::*;

const CRM: &str = "crm";
const CRM_PASSWORD: &str = "crm-password-0123456789";
const OTHER_PASSWORD: &str = "other-password-0123456789";
const CARRIER: &str = "C9LOCK";

fn config(guard: &str) -> String {
    guarded_sim_config(
        &format!("check_numbers = false\n{guard}"),
        &format!(
            r#"
[cloud9]
carrier_ids = ["{CARRIER}"]

[[partner]]
id = "crm"
dialects = ["native", "spokn", "airtel"]
username = "{CRM}"
password = "{CRM_PASSWORD}"
roundtrip = "full"
customer_id = "CUST-1"
call_flow_ids = ["FLOW-1"]
provider = "sim"

[[partner]]
id = "other"
dialects = ["native"]
username = "other"
password = "{OTHER_PASSWORD}"
provider = "sim"
"#
        ),
    )
}

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {b64}\r\n")
}

/// A request with `headers` (each ending in CRLF) and `body`.
fn raw(method: &str, path: &str, headers: &str, content_type: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: c2cd\r\n{headers}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn native(password: &str) -> String {
    native_as(CRM, password)
}

fn native_as(user: &str, password: &str) -> String {
    let body = serde_json::json!({
        "a": { "participants": [{ "number": "+16045551234" }] },
        "b": { "participants": [{ "number": "+16045550000" }] },
    });
    raw(
        "POST",
        "/v1/calls",
        &basic(user, password),
        "application/json",
        &body.to_string(),
    )
}

fn spokn(password: &str) -> String {
    raw(
        "POST",
        "/c2c/1.0/call",
        &basic(CRM, password),
        "application/x-www-form-urlencoded",
        "aparty=16045551234&bparty=16045550000",
    )
}

fn airtel(password: &str) -> String {
    raw(
        "POST",
        "/v2/execute/workflow",
        &basic(CRM, password),
        "application/json",
        "{}",
    )
}

fn roundtrip(password: &str) -> String {
    raw(
        "POST",
        "/roundtrip",
        &basic(CRM, password),
        "application/vnd.dial800.roundtrip+xml",
        "<x/>",
    )
}

fn admin(token: &str) -> String {
    format!("GET /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
}

fn cloud9(carrier: &str) -> String {
    raw(
        "POST",
        "/cloud9/moc",
        "",
        "application/x-www-form-urlencoded",
        &format!("TIMESTAMP=2026-11-22+10%3A15%3A00&IMSI=234180000000001&TRANSACTIONID=1&CARRIERID={carrier}&MSISDN=%2B447700900123&DESTINATION=%2B447700900200&LOCATION=234-18"),
    )
}

fn xip(partner: &str, auth: &str) -> String {
    format!(
        "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
        xip_query(partner, REQUESTOR, FULFILLMENT, auth)
    )
}

fn good_xip() -> String {
    xip(PARTNER, &auth(SECRET, PARTNER, REQUESTOR, FULFILLMENT))
}

fn metric(d: &Daemon, line_start: &str) -> String {
    let m = request_from(
        "127.0.0.2",
        d.addr,
        "GET /metrics HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
    );
    m.text()
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in /metrics:\n{}", m.text()))
        .to_string()
}

#[test]
fn every_door_counts_failures_and_refuses_a_locked_source_in_its_own_code() {
    let mut d = Daemon::start(&config(
        "auth_failures_per_source = \"5/1m\"\nauth_failures_per_partner = \"off\"\nauth_lockout = \"1m\"",
    ));
    // The XIP vendor's server authenticates first: it stays served.
    let r = request(d.addr, &good_xip());
    assert_eq!(r.status, 200, "{}", r.text());

    // One wrong credential at each of six doors: the sixth passes the count of 5.
    let wrong = [
        xip(PARTNER, "0123456789abcdef0123456789abcdef"),
        native("wrong"),
        spokn("wrong"),
        airtel("wrong"),
        roundtrip("wrong"),
        admin("wrong-token"),
    ];
    for (i, w) in wrong.iter().enumerate() {
        let r = request(d.addr, w);
        assert_ne!(r.status, 429, "failure {i} was refused early: {}", r.text());
    }
    d.wait_logged("auth: source 127.0.0.1 locked for 60 s");
    assert_eq!(
        metric(&d, "c2cd_auth_failures_total"),
        "c2cd_auth_failures_total 6"
    );
    assert_eq!(
        metric(&d, "c2cd_auth_lockouts_total{scope=\"source\"}"),
        "c2cd_auth_lockouts_total{scope=\"source\"} 1"
    );

    // Locked: right credentials or not, each door in its own words.
    let retry = |r: &Response| {
        let s: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=60).contains(&s), "Retry-After {s}");
    };
    let r = request(d.addr, &native(CRM_PASSWORD));
    assert_eq!(r.status, 429, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["code"], "auth_lockout", "{body}");
    retry(&r);
    let native_id = r.call_id();

    let r = request(d.addr, &spokn(CRM_PASSWORD));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("<code>101</code>"), "{}", r.text());
    retry(&r);

    let r = request(d.addr, &airtel(CRM_PASSWORD));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text().contains("AUTH_FAILURE_LIMIT_EXCEEDED"),
        "{}",
        r.text()
    );
    retry(&r);

    let r = request(d.addr, &roundtrip(CRM_PASSWORD));
    assert_eq!(r.status, 429, "{}", r.text());
    retry(&r);

    let r = request(d.addr, &admin(TOKEN));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("auth_lockout"), "{}", r.text());
    retry(&r);

    let r = request(d.addr, &cloud9(CARRIER));
    assert_eq!(r.status, 429, "{}", r.text());
    retry(&r);

    // XIP: a stranger partner's good Auth is refused, 138, and nothing goes
    // upstream; the vendor that authenticated before is still served.
    let r = request(d.addr, &xip("nobody", "x"));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.form()["Result"], "138", "{}", r.text());
    retry(&r);
    let xip_id = r.call_id();
    let r = request(d.addr, &good_xip());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.form()["Result"], "0", "{}", r.text());

    // Another source is not locked: the admin API from 127.0.0.2 shows the
    // refusals, each a row naming the rule.
    for id in [native_id, xip_id] {
        let r = request_from(
            "127.0.0.2",
            d.addr,
            &format!("GET /v1/calls/{id} HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let call: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(call["state"], "rejected", "{call}");
        assert_eq!(call["guard"], "auth_lockout", "{call}");
    }
    assert_eq!(
        metric(&d, "c2cd_auth_locked{scope=\"source\"}"),
        "c2cd_auth_locked{scope=\"source\"} 1"
    );
    // The secrets tried and the right ones are nowhere in the log.
    let log = d.log_text();
    for secret in [CRM_PASSWORD, "wrong-token", TOKEN, SECRET, CARRIER] {
        assert!(!log.contains(secret), "{secret:?} in the log");
    }
}

#[test]
fn a_partner_guessed_at_from_many_sources_is_locked_but_its_own_servers_are_not() {
    let mut d = Daemon::start(&config(
        "auth_failures_per_source = \"off\"\nauth_failures_per_partner = \"3/1m\"\nauth_lockout = \"1m\"",
    ));
    let r = request_from("127.0.0.1", d.addr, &native(CRM_PASSWORD));
    assert_eq!(r.status, 201, "{}", r.text());
    // Strangers, each from an address of its own, guess crm's password.
    for i in 2..=5 {
        let r = request_from(&format!("127.0.0.{i}"), d.addr, &native("guess"));
        assert_eq!(r.status, 401, "{}", r.text());
    }
    d.wait_logged("auth: partner \"crm\" locked for 60 s");
    // A new source with crm's right password is refused...
    let r = request_from("127.0.0.6", d.addr, &native(CRM_PASSWORD));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("auth_lockout"), "{}", r.text());
    // ...another partner from there is not touched, and crm's own server goes on.
    let r = request_from("127.0.0.6", d.addr, &native_as("other", OTHER_PASSWORD));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = request_from("127.0.0.1", d.addr, &native(CRM_PASSWORD));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        metric(&d, "c2cd_auth_lockouts_total{scope=\"partner\"}"),
        "c2cd_auth_lockouts_total{scope=\"partner\"} 1"
    );
}

#[test]
fn requests_without_credentials_do_not_count() {
    let d = Daemon::start(&config("auth_failures_per_source = \"2/1m\""));
    for _ in 0..5 {
        let r = request(
            d.addr,
            "GET /v1/calls HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = request(d.addr, &native(CRM_PASSWORD));
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The scan every test's daemon gets at its end ([`secrets_of`] in common.rs)
/// finds every kind of secret a config holds.
#[test]
fn the_log_scan_knows_every_kind_of_secret() {
    let mut text = config("");
    text.push_str(&crate::native::config("http://127.0.0.1:9/cb").replace(&base_config(""), ""));
    let found = secrets_of(&text);
    for s in [
        SECRET,
        CRM_PASSWORD,
        OTHER_PASSWORD,
        TOKEN,
        CARRIER,
        "callback-secret-0123456789",
        "upstream-secret",
    ] {
        assert!(found.iter().any(|f| f == s), "{s:?} not among {found:?}");
    }
    assert!(!found.iter().any(|f| f == "sim" || f == "crm"), "{found:?}");
}
