//! c2cd in front of c2cd: one daemon's provider is an upstream Spokn or Airtel
//! API served by a second daemon's front door, whose simulator places the
//! call; the second's callbacks reach the first's `/callbacks/` and drive its
//! call to the same end.

use base64::Engine;

use crate::common::*;

/// What the first daemon's config says until it knows its own address.
const NOT_YET: &str = "http://127.0.0.1:1";

/// The second daemon: a Spokn and an Airtel front-door account on the
/// simulator (B busy for +1555000…, +91955500…), retrying callbacks quickly.
fn server() -> String {
    base_config(
        r#"
[callbacks]
backoff = "20ms"
max_backoff = "100ms"

[[partner]]
id = "spokn-account"
dialects = ["spokn"]
username = "spokn-acct"
password = "spokn-acct-password-0123456789"
enterprise = true
provider = "sim"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["callback-secret-0123456789"]

[[partner]]
id = "airtel-account"
dialects = ["airtel"]
username = "airtel-acct"
password = "airtel-acct-password-0123456789"
customer_id = "CUST-9"
call_flow_ids = ["FLOW-9"]
caller_ids = ["8000000009"]
provider = "sim"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["callback-secret-0123456789"]

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
busy = ["1555000*", "91955500*"]
"#,
    )
}

/// The first daemon: a native partner routed to the second daemon at
/// `server`, through its Spokn or its Airtel front door; callbacks come to
/// `public_url`.
fn client(server: std::net::SocketAddr, public_url: &str) -> String {
    base_config(&format!(
        r#"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "via-spokn"

[[partner]]
id = "crm-in"
dialects = ["native"]
username = "crm-in"
password = "crm-in-password-0123456789"
provider = "via-airtel"

[[provider]]
name = "via-spokn"
kind = "spokn"
url = "http://{server}/c2c/1.0/call"
username = "spokn-acct"
secret = "spokn-acct-password-0123456789"
enterprise = true

[[provider]]
name = "via-airtel"
kind = "airtel"
url = "http://{server}/v2/execute/workflow"
username = "airtel-acct"
secret = "airtel-acct-password-0123456789"
customer_id = "CUST-9"
call_flow_id = "FLOW-9"
caller_id = "8000000009"
"#
    ))
    .replace(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"127.0.0.1:0\"]\npublic_url = \"{public_url}\""),
    )
}

/// Both daemons, the first told its own address as its public URL.
fn chain() -> (Daemon, Daemon) {
    let second = Daemon::start(&server());
    let mut first = Daemon::start(&client(second.addr, NOT_YET));
    let own = format!("http://{}", first.addr);
    first.reload(&client(second.addr, &own));
    (first, second)
}

fn place(d: &Daemon, user: &str, password: &str, a: &str, b: &str) -> String {
    let body = serde_json::json!({
        "a": {"participants": [{"number": a}]},
        "b": {"participants": [{"number": b}]},
        "time_limit": 600,
    })
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let r = request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.call_id()
}

/// The second daemon's latest call, once it has had `n` (the first's call id
/// reaches it only as a memo: Spokn's token).
fn its_call(second: &Daemon, n: usize) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_slice(&second.admin_get("/v1/calls", TOKEN).body).unwrap();
    let calls = all["calls"].as_array().unwrap();
    assert_eq!(calls.len(), n, "{all}");
    second.call(calls[0]["id"].as_str().unwrap())
}

fn callbacks(d: &Daemon, id: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(
        &d.admin_get(&format!("/v1/calls/{id}/callbacks"), TOKEN)
            .body,
    )
    .unwrap();
    v["callbacks"].as_array().unwrap().clone()
}

#[test]
fn a_call_through_a_second_c2cds_spokn_front_door_ends_by_its_callbacks() {
    let (mut first, mut second) = chain();
    let own = format!("http://{}", first.addr);

    let id = place(
        &first,
        "crm",
        "crm-password-0123456789",
        "+18474255380",
        "+14155550123",
    );
    first.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let call = first.call(&id);
    assert_eq!(call["provider"], "via-spokn");
    assert_eq!(call["cdr"]["state"], "completed");
    let details: Vec<&str> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(
        details,
        [
            "Spokn leg 1 status 0: Success",
            "Spokn leg 2 status 0: Success"
        ]
    );

    // The second daemon placed it for the first (the call id is its token)
    // and told it so at its own /callbacks/spokn/ URL, signed.
    let theirs = its_call(&second, 1);
    assert_eq!(theirs["state"], "completed");
    assert_eq!(theirs["reference"].as_str(), Some(id.as_str()));
    let theirs_id = theirs["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        second.wait_log(&format!("for call {theirs_id}: delivered"));
    }
    let sent = callbacks(&second, &theirs_id);
    assert_eq!(sent.len(), 2);
    for cb in &sent {
        let url = cb["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{own}/callbacks/spokn/{id}/")),
            "{url}"
        );
        assert_eq!(cb["state"], "delivered", "{cb}");
        assert_eq!(cb["last_status"], 200, "{cb}");
    }

    // B busy at the far end fails the call here with B busy.
    let id = place(
        &first,
        "crm",
        "crm-password-0123456789",
        "+18474255380",
        "+15550001234",
    );
    first.wait_log(&format!("call {id}: b_ended_busy -> failed"));
    let legs = first.call(&id)["legs"].as_array().unwrap().clone();
    let b = legs.iter().find(|l| l["side"] == "b").unwrap();
    assert_eq!(
        (b["state"].as_str(), b["cause"].as_i64()),
        (Some("busy"), Some(17))
    );
    assert_eq!(its_call(&second, 2)["state"], "failed");
}

#[test]
fn a_call_through_a_second_c2cds_airtel_front_door_ends_by_its_events_and_cdr() {
    let (mut first, mut second) = chain();
    let own = format!("http://{}", first.addr);

    let id = place(
        &first,
        "crm-in",
        "crm-in-password-0123456789",
        "+919810000001",
        "+919810000002",
    );
    first.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    // The CDR follows the end event, and agrees with it.
    first.wait_log(&format!(
        "call {id}: Airtel's CDR agrees with the call's end (completed)"
    ));
    let call = first.call(&id);
    assert_eq!(call["provider"], "via-airtel");
    assert_eq!(call["cdr"]["state"], "completed");
    let kinds = event_kinds(&call);
    assert_eq!(
        kinds,
        [
            "originating",
            "accepted",
            "a_ringing",
            "a_answered",
            "b_ringing",
            "b_answered",
            "bridged",
            "a_ended_normal"
        ]
    );

    // Every event and the CDR reached the first daemon's /callbacks/airtel/.
    let theirs = its_call(&second, 1);
    assert_eq!(theirs["state"], "completed");
    let theirs_id = theirs["id"].as_str().unwrap().to_string();
    let sent = callbacks(&second, &theirs_id);
    assert!(sent.len() >= 8, "{sent:?}");
    for _ in 0..sent.len() {
        second.wait_log(&format!("for call {theirs_id}: delivered"));
    }
    let sent = callbacks(&second, &theirs_id);
    for cb in &sent {
        let url = cb["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{own}/callbacks/airtel/{id}/")),
            "{url}"
        );
        assert_eq!(cb["state"], "delivered", "{cb}");
    }
    assert_eq!(sent.last().unwrap()["body"]["eventType"], "CDR");

    // B busy at the far end: the events fail the call with B busy.
    let id = place(
        &first,
        "crm-in",
        "crm-in-password-0123456789",
        "+919810000001",
        "+919555000001",
    );
    first.wait_log(&format!("call {id}: b_ended_busy -> failed"));
    first.wait_log(&format!(
        "call {id}: Airtel's CDR agrees with the call's end (failed)"
    ));
}
