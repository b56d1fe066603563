//! Upstream click-to-call APIs as providers: a fake Spokn on loopback gets the
//! seed's request, answers in its XML, and its per-leg callbacks drive the call;
//! a fake Airtel gets the seed's workflow, and its events and CDR (retries and a
//! second participant among them) drive the call and its legs.

use base64::Engine;

use crate::common::*;

const OK_XML: &str = "<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>200</code>\n    <desc>Request Successful</desc>\n  </c2c>\n</spokn>\n";
const BAD_A_XML: &str = "<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>103</code>\n    <desc>Bad aparty number</desc>\n  </c2c>\n</spokn>\n";

fn config(url: &str) -> String {
    base_config(&format!(
        r#"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "spokn-up"

[[provider]]
name = "spokn-up"
kind = "spokn"
url = "{url}"
username = "acct"
secret = "acct-password"
enterprise = true
"#
    ))
    .replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\npublic_url = \"https://c2cd.example\"",
    )
}

fn place(d: &Daemon) -> Response {
    let body = serde_json::json!({
        "a": {"participants": [{"number": "+18474255380", "retries": 2}], "retry_delay": 5},
        "b": {"participants": [{"number": "+14155550123"}]},
        "time_limit": 600,
    })
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789");
    request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn report(d: &Daemon, path: &str, form: &str) -> u16 {
    request(
        d.addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .status
}

#[test]
fn a_spokn_upstream_places_the_call_and_its_callbacks_end_it() {
    let spokn = Upstream::start(Behaviour::Reply(200, "application/xml", OK_XML));
    let mut d = Daemon::start(&config(&spokn.url()));
    let r = place(&d);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();

    // The seed's request, with c2cd's Basic credentials and callback URL.
    spokn.wait_requests(1);
    let got = &spokn.requests()[0];
    let expected = base64::engine::general_purpose::STANDARD.encode("acct:acct-password");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
    assert_eq!(
        got.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let p: std::collections::HashMap<String, String> = got.params().into_iter().collect();
    assert_eq!(
        (p["aparty"].as_str(), p["bparty"].as_str()),
        ("+18474255380", "+14155550123")
    );
    assert_eq!(
        (p["duration"].as_str(), p["token"].as_str()),
        ("10", id.as_str())
    );
    assert_eq!(
        (p["maxretries"].as_str(), p["retrytime"].as_str()),
        ("2", "5")
    );
    assert_eq!(
        (p["apartycid"].as_str(), p["bpartycid"].as_str()),
        ("+14155550123", "+18474255380")
    );
    let url = &p["url"];
    let path = url
        .strip_prefix("https://c2cd.example")
        .unwrap_or_else(|| panic!("{url}"));
    assert!(
        path.starts_with(&format!("/callbacks/spokn/{id}/")),
        "{path}"
    );
    assert_eq!(d.call(&id)["state"], "accepted");

    // A forged callback is refused; Spokn's own two reports complete the call.
    let forged = format!("/callbacks/spokn/{id}/{}", "0".repeat(32));
    assert_eq!(report(&d, &forged, "leg=1&status=0"), 403);
    let leg = |n: u8| {
        format!("userid=acct&aparty=%2B18474255380&bparty=%2B14155550123&leg={n}&start=2026-11-22T10%3A00%3A00Z&duration=42&token={id}&rate=0&cost=0&status=0")
    };
    // A report the call cannot take yet (leg 2 before leg 1) is refused with
    // 409, for Spokn to send again, not dropped.
    assert_eq!(report(&d, path, &leg(2)), 409);
    // c2cd cannot cancel a call Spokn places.
    let hang = request(
        d.addr,
        &format!("POST /v1/calls/{id}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(hang.status, 409, "{}", hang.text());
    assert!(hang.text().contains("cannot_cancel"));
    assert_eq!(report(&d, path, &leg(1)), 200);
    assert_eq!(report(&d, path, &leg(2)), 200);
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let call = d.call(&id);
    assert_eq!(call["state"], "completed");
    assert_eq!(call["cdr"]["state"], "completed");
    // What Spokn said is kept with the event it ended.
    let events = call["events"].as_array().unwrap();
    assert_eq!(
        events.last().unwrap()["detail"],
        "Spokn leg 2 status 0: Success"
    );
}

/// `config`, with the simulator after the upstream `up` in the partner's
/// route, and a Spokn front-door partner on the same route.
fn routed(config: String, up: &str) -> String {
    let route = config.replace(
        &format!("provider = \"{up}\"\n"),
        &format!("provider = [\"{up}\", \"sim\"]\n"),
    );
    format!(
        r#"{route}
[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"

[[partner]]
id = "spokn-client"
dialects = ["spokn"]
username = "spokn-client"
password = "spokn-client-password-0123"
provider = ["{up}", "sim"]
"#
    )
}

fn kinds(call: &serde_json::Value) -> Vec<String> {
    call["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The first provider's breaker failures, as `/v1/providers` shows them.
fn failures(d: &Daemon) -> u64 {
    let p: serde_json::Value =
        serde_json::from_slice(&d.admin_get("/v1/providers", TOKEN).body).unwrap();
    p["providers"][0]["failures"].as_u64().unwrap()
}

fn spokn_xml(code: u16, desc: &str) -> &'static str {
    let xml = format!("<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>{code}</code>\n    <desc>{desc}</desc>\n  </c2c>\n</spokn>\n");
    Box::leak(xml.into_boxed_str())
}

#[test]
fn a_spokn_refusal_about_a_number_fails_the_call_with_its_code() {
    let spokn = Upstream::start(Behaviour::Reply(200, "application/xml", BAD_A_XML));
    let d = Daemon::start(&routed(config(&spokn.url()), "spokn-up"));
    let r = place(&d);
    assert_eq!(r.status, 502, "{}", r.text());
    let call = d.call(&r.call_id());
    // Final: the next provider of the route is not asked.
    assert_eq!(call["state"], "failed");
    assert_eq!(call["provider"], "spokn-up");
    assert!(!kinds(&call).contains(&"failover".to_string()), "{call}");
    assert_eq!(
        call["error"], "refused: Spokn code 103: Bad aparty number",
        "{call}"
    );
    // The provider answered sanely: its breaker counts no failure.
    assert_eq!(failures(&d), 0);

    // A Spokn client of c2cd hears it as Spokn would say it.
    let auth =
        base64::engine::general_purpose::STANDARD.encode("spokn-client:spokn-client-password-0123");
    let form = "aparty=%2B18474255380&bparty=%2B14155550123";
    let r = request(
        d.addr,
        &format!(
            "POST /c2c/1.0/call HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<code>103</code>"), "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "failed");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("Spokn code 103: Bad aparty number"),
        "{call}"
    );
}

#[test]
fn a_spokn_fault_fails_over_and_counts_against_its_breaker() {
    let xml = spokn_xml(105, "Unable to fetch credits information");
    let spokn = Upstream::start(Behaviour::Reply(200, "application/xml", xml));
    let d = Daemon::start(&routed(config(&spokn.url()), "spokn-up"));
    let r = place(&d);
    assert_eq!(r.status, 201, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["provider"], "sim");
    assert_eq!(&kinds(&call)[..3], ["originating", "failover", "accepted"]);
    assert_eq!(
        call["events"][1]["detail"],
        "spokn-up failed: refused: Spokn code 105: Unable to fetch credits information; trying sim",
        "{call}"
    );
    assert_eq!(failures(&d), 1);
}

#[test]
fn a_destination_spokn_does_not_serve_goes_to_the_next_provider() {
    let xml = spokn_xml(107, "bparty destination not supported");
    let spokn = Upstream::start(Behaviour::Reply(200, "application/xml", xml));
    let d = Daemon::start(&routed(config(&spokn.url()), "spokn-up"));
    let r = place(&d);
    assert_eq!(r.status, 201, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["provider"], "sim");
    assert!(
        call["events"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("Spokn code 107: bparty destination not supported"),
        "{call}"
    );
    // Spokn is well; it only does not serve that number.
    assert_eq!(failures(&d), 0);
}

fn airtel_config(url: &str) -> String {
    base_config(&format!(
        r#"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "airtel-up"

[[provider]]
name = "airtel-up"
kind = "airtel"
url = "{url}"
username = "acct"
secret = "acct-password"
customer_id = "CUST-9"
call_flow_id = "FLOW-9"
caller_id = "8000000009"
"#
    ))
    .replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\npublic_url = \"https://c2cd.example\"",
    )
}

fn post_json(d: &Daemon, path: &str, body: &str) -> u16 {
    request(
        d.addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .status
}

#[test]
fn an_airtel_upstream_gets_the_seeds_workflow_and_its_events_end_the_call() {
    let airtel = Upstream::start(Behaviour::Reply(
        200,
        "application/json",
        r#"{"status": "success", "correlationId": "Xchange123863"}"#,
    ));
    let mut d = Daemon::start(&airtel_config(&airtel.url()));
    let body = serde_json::json!({
        "a": {"participants": [{"number": "+919810000001", "retries": 1}]},
        "b": {"strategy": "parallel", "participants": [{"number": "+919810000002"}, {"number": "+919810000003"}]},
        "time_limit": 600,
        "record": true,
    })
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789");
    let r = request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();

    airtel.wait_requests(1);
    let got = &airtel.requests()[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    let w: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        (
            w["callFlowId"].as_str(),
            w["customerId"].as_str(),
            w["callType"].as_str()
        ),
        (Some("FLOW-9"), Some("CUST-9"), Some("OUTBOUND"))
    );
    let from = &w["callFlowConfiguration"]["initiateCall_1"];
    assert_eq!(from["participants"][0]["participantAddress"], "9810000001");
    assert_eq!(from["participants"][0]["maxRetries"], 1);
    let to = &w["callFlowConfiguration"]["addParticipant_1"];
    assert_eq!(to["mergingStrategy"], "PARALLEL");
    assert_eq!(to["participants"].as_array().unwrap().len(), 2);
    assert_eq!(w["callFlowConfiguration"]["record"]["enabled"], true);
    let notify = from["callBackURLs"][0]["notifyURL"].as_str().unwrap();
    let path = notify
        .strip_prefix("https://c2cd.example")
        .unwrap()
        .to_string();
    assert!(
        path.starts_with(&format!("/callbacks/airtel/{id}/")),
        "{path}"
    );

    // Airtel's events, as its seed shows them, drive the call to its end.
    let ev = |addr: &str, event: &str, cause: &str| {
        serde_json::json!({
            "eventType": "CALL", "participantAddress": addr, "event": event, "time": "2026-11-22T10:00:00.000+0000",
            "metaData": {"causeCode": cause, "sipCode": "699", "causeCodeDescription": "Normal call clearing"}
        })
        .to_string()
    };
    assert_eq!(
        post_json(
            &d,
            &format!("/callbacks/airtel/{id}/{}", "f".repeat(32)),
            &ev("9810000001", "Ringing", "")
        ),
        403
    );
    for (addr, event) in [
        ("9810000001", "Ringing"),
        ("9810000001", "Answered"),
        ("9810000002", "Ringing"),
        ("9810000002", "Answered"),
        ("9810000002", "Merged"),
        ("9810000001", "Removed"),
    ] {
        assert_eq!(post_json(&d, &path, &ev(addr, event, "16")), 200, "{event}");
    }
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    assert_eq!(d.call(&id)["cdr"]["state"], "completed");
}

#[test]
fn an_airtel_refusal_of_the_accounts_settings_fails_over_with_its_code() {
    let airtel = Upstream::start(Behaviour::Reply(
        400,
        "application/json",
        r#"{"httpStatus": 400, "displayMessage": null, "errorMessage": "invalid called id", "errorCode": "INVALID_CALLER_ID", "errorType": null, "apiPath": null, "errorDetails": null, "resourceLayer": "CONTROLLER", "errorMeta": null}"#,
    ));
    let d = Daemon::start(&routed(airtel_config(&airtel.url()), "airtel-up"));
    let body = serde_json::json!({
        "a": {"participants": [{"number": "+919810000001"}]},
        "b": {"participants": [{"number": "+919810000002"}]},
    })
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789");
    let r = request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["provider"], "sim");
    assert_eq!(
        call["events"][1]["detail"],
        "airtel-up failed: refused: Airtel HTTP 400 INVALID_CALLER_ID: invalid called id; trying sim",
        "{call}"
    );
    assert_eq!(failures(&d), 1);
}

/// Places a call from +919810000001 to `b` through the Airtel fake and
/// returns its id and the path Airtel is to call back on.
fn place_airtel(d: &Daemon, airtel: &Upstream, b: &str) -> (String, String) {
    let body = serde_json::json!({
        "a": {"participants": [{"number": "+919810000001"}]},
        "b": {"participants": [{"number": b}]},
        "time_limit": 600,
    });
    place_airtel_plan(d, airtel, &body)
}

/// Places the call `body` asks for through the Airtel fake (see
/// [`place_airtel`]).
fn place_airtel_plan(d: &Daemon, airtel: &Upstream, body: &serde_json::Value) -> (String, String) {
    let body = body.to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789");
    let n = airtel.requests().len() + 1;
    let r = request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();
    airtel.wait_requests(n);
    let w: serde_json::Value = serde_json::from_str(&airtel.requests()[n - 1].body).unwrap();
    let notify = w["callFlowConfiguration"]["initiateCall_1"]["callBackURLs"][0]["notifyURL"]
        .as_str()
        .unwrap();
    let path = notify.strip_prefix("https://c2cd.example").unwrap();
    (id, path.to_string())
}

/// A CDR as c2cd's own Airtel front door writes one (the seed shows none).
fn airtel_cdr(id: &str, status: &str, b_status: &str, b_cause: &str) -> String {
    let b_answered = b_status == "COMPLETED";
    serde_json::json!({
        "eventType": "CDR", "correlationId": id, "callFlowId": "FLOW-9", "customerId": "CUST-9",
        "callStatus": status, "startTime": "2026-11-22T10:00:00.000+0000", "endTime": "2026-11-22T10:01:00.000+0000",
        "duration": 60, "billableDuration": if b_answered { 42 } else { 0 }, "recordingUrl": null,
        "causeCode": "16", "causeCodeDescription": "Normal call clearing",
        "participants": [
            {"participantAddress": "9810000001", "participantName": "A", "leg": "from", "attempt": 1, "status": "COMPLETED",
             "startTime": "2026-11-22T10:00:00.000+0000", "answerTime": "2026-11-22T10:00:05.000+0000",
             "endTime": "2026-11-22T10:01:00.000+0000", "duration": 55, "causeCode": "16", "sipCode": "200",
             "causeCodeDescription": "Normal call clearing"},
            {"participantAddress": "9810000002", "participantName": "B", "leg": "to", "attempt": 1, "status": b_status,
             "startTime": "2026-11-22T10:00:06.000+0000",
             "answerTime": if b_answered { serde_json::json!("2026-11-22T10:00:18.000+0000") } else { serde_json::Value::Null },
             "endTime": "2026-11-22T10:01:00.000+0000", "duration": if b_answered { 42 } else { 0 },
             "causeCode": b_cause, "sipCode": if b_answered { "200" } else { "486" },
             "causeCodeDescription": if b_answered { "Normal call clearing" } else { "User busy" }},
        ],
    })
    .to_string()
}

#[test]
fn an_airtel_cdr_ends_a_call_whose_end_was_lost_and_a_repeat_changes_nothing() {
    let airtel = Upstream::start(Behaviour::Reply(
        200,
        "application/json",
        r#"{"status": "success", "correlationId": "Xchange123863"}"#,
    ));
    let mut d = Daemon::start(&airtel_config(&airtel.url()));
    let (id, path) = place_airtel(&d, &airtel, "+919810000002");

    // The events up to the bridge arrive; the end event is lost.
    let ev = |addr: &str, event: &str| {
        serde_json::json!({"eventType": "CALL", "participantAddress": addr, "event": event,
            "time": "2026-11-22T10:00:00.000+0000"})
        .to_string()
    };
    for (addr, event) in [
        ("9810000001", "Ringing"),
        ("9810000001", "Answered"),
        ("9810000002", "Ringing"),
        ("9810000002", "Answered"),
        ("9810000002", "Merged"),
    ] {
        assert_eq!(post_json(&d, &path, &ev(addr, event)), 200, "{event}");
    }
    d.wait_log(&format!("call {id}: bridged -> bridged"));
    let cdr = airtel_cdr(&id, "COMPLETED", "COMPLETED", "16");
    // Signed like the events: a forged one is refused.
    let forged = format!("/callbacks/airtel/{id}/{}", "f".repeat(32));
    assert_eq!(post_json(&d, &forged, &cdr), 403);

    // The CDR closes the call with its causes.
    assert_eq!(post_json(&d, &path, &cdr), 200);
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let call = d.call(&id);
    assert_eq!(call["state"], "completed");
    assert_eq!(call["cdr"]["state"], "completed");
    let events = call["events"].as_array().unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "a_ended_normal");
    assert_eq!(
        last["detail"],
        "Airtel's CDR: COMPLETED, Airtel causeCode 16, sipCode 200: Normal call clearing"
    );
    let seen = events.len();

    // Sent again, it agrees with the end: 200, and nothing more is recorded.
    assert_eq!(post_json(&d, &path, &cdr), 200);
    d.wait_log(&format!(
        "call {id}: Airtel's CDR agrees with the call's end (completed)"
    ));
    // A late real-time event is answered alike: no retry would change the call.
    assert_eq!(post_json(&d, &path, &ev("9810000001", "Removed")), 200);
    // One that disagrees is answered 200 too (the record is final), and logged.
    let other = airtel_cdr(&id, "FAILED", "BUSY", "17");
    assert_eq!(post_json(&d, &path, &other), 200);
    d.wait_log(&format!(
        "call {id}: Airtel's CDR says \"FAILED\", the call ended completed"
    ));
    assert_eq!(d.call(&id)["events"].as_array().unwrap().len(), seen);
}

#[test]
fn an_airtel_cdr_alone_tells_the_whole_call() {
    let airtel = Upstream::start(Behaviour::Reply(
        200,
        "application/json",
        r#"{"status": "success", "correlationId": "Xchange123863"}"#,
    ));
    let mut d = Daemon::start(&airtel_config(&airtel.url()));
    let (id, path) = place_airtel(&d, &airtel, "+919810000002");
    // Not one real-time event arrived: A answered, B was busy.
    let cdr = airtel_cdr(&id, "FAILED", "BUSY", "17");
    assert_eq!(post_json(&d, &path, &cdr), 200);
    d.wait_log(&format!("call {id}: b_ended_busy -> failed"));
    let call = d.call(&id);
    assert_eq!(
        kinds(&call)[2..],
        ["a_ringing", "a_answered", "b_ringing", "b_ended_busy"]
    );
    let legs = call["legs"].as_array().unwrap();
    let leg = |side: &str| legs.iter().find(|l| l["side"] == side).unwrap();
    assert_eq!(
        (leg("a")["state"].as_str(), leg("a")["cause"].as_i64()),
        (Some("hung_up"), Some(16))
    );
    assert_eq!(
        (leg("b")["state"].as_str(), leg("b")["cause"].as_i64()),
        (Some("busy"), Some(17))
    );
    assert_eq!(leg("b")["number"], "+919810000002");
    // A CDR for a call c2cd does not know: 404.
    let unknown = format!(
        "/callbacks/airtel/{}/{}",
        "019aa7c2-0000-7000-8000-000000000000",
        "0".repeat(32)
    );
    assert_eq!(post_json(&d, &unknown, &cdr), 404);
}

#[test]
fn an_airtel_call_with_retries_and_a_second_b_completes_with_every_leg() {
    let airtel = Upstream::start(Behaviour::Reply(
        200,
        "application/json",
        r#"{"status": "success", "correlationId": "Xchange123863"}"#,
    ));
    let mut d = Daemon::start(&airtel_config(&airtel.url()));
    let body = serde_json::json!({
        "a": {"participants": [{"number": "+919810000001", "retries": 1}], "retry_delay": 5},
        "b": {"participants": [{"number": "+919810000002"}, {"number": "+919810000003"}]},
        "time_limit": 600,
    });
    let (id, path) = place_airtel_plan(&d, &airtel, &body);
    let w: serde_json::Value = serde_json::from_str(&airtel.requests()[0].body).unwrap();
    let flow = &w["callFlowConfiguration"];
    assert_eq!(flow["initiateCall_1"]["participants"][0]["maxRetries"], 1);
    assert_eq!(flow["addParticipant_1"]["mergingStrategy"], "SEQUENTIAL");

    let ev = |addr: &str, event: &str, cause: &str, sip: &str, words: &str| {
        serde_json::json!({
            "eventType": "CALL", "participantAddress": addr, "event": event, "time": "2026-11-22T10:00:00.000+0000",
            "metaData": {"causeCode": cause, "sipCode": sip, "causeCodeDescription": words}
        })
        .to_string()
    };
    // A is busy; Airtel tries it again, so the call goes on.
    assert_eq!(
        post_json(&d, &path, &ev("9810000001", "Ringing", "", "", "")),
        200
    );
    let busy = ev("9810000001", "Removed", "17", "486", "User busy");
    assert_eq!(post_json(&d, &path, &busy), 200);
    assert_eq!(d.call(&id)["state"], "dialing_a");
    // A answers its second try; B's first participant does not answer, its
    // second does.
    for (addr, event, cause, sip, words) in [
        ("9810000001", "Ringing", "", "", ""),
        ("9810000001", "Answered", "", "", ""),
        ("9810000002", "Ringing", "", "", ""),
        ("9810000002", "Removed", "19", "480", "No answer"),
        ("9810000003", "Ringing", "", "", ""),
        ("9810000003", "Answered", "", "", ""),
        ("9810000003", "Merged", "", "", ""),
        ("9810000001", "Removed", "16", "200", "Normal call clearing"),
    ] {
        let status = post_json(&d, &path, &ev(addr, event, cause, sip, words));
        assert_eq!(status, 200, "{addr} {event}");
    }
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let call = d.call(&id);
    assert_eq!(call["state"], "completed");
    assert_eq!(call["cdr"]["state"], "completed");
    let legs: Vec<_> = call["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["side"].as_str().unwrap().to_string(),
                l["attempt"].as_i64().unwrap(),
                l["number"].as_str().unwrap().to_string(),
                l["state"].as_str().unwrap().to_string(),
                l["cause"].as_i64(),
            )
        })
        .collect();
    let leg = |side: &str, attempt, number: &str, state: &str, cause| {
        (
            side.to_string(),
            attempt,
            number.to_string(),
            state.to_string(),
            Some(cause),
        )
    };
    assert_eq!(
        legs,
        [
            leg("a", 1, "+919810000001", "busy", 17),
            leg("a", 2, "+919810000001", "hung_up", 16),
            leg("b", 1, "+919810000002", "no_answer", 19),
            leg("b", 2, "+919810000003", "hung_up", 16),
        ]
    );
    let busy = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "a_ended_busy")
        .unwrap();
    assert_eq!(
        (busy["state"].as_str(), busy["detail"].as_str()),
        (
            Some("dialing_a"),
            Some("Airtel causeCode 17, sipCode 486: User busy")
        )
    );
    let seen = call["events"].as_array().unwrap().len();

    // The CDR that follows numbers the legs alike: it agrees, and adds nothing.
    let part = |address: &str, leg: &str, attempt: u16, status: &str, cause: &str| {
        let answered = status == "COMPLETED";
        serde_json::json!({"participantAddress": address, "leg": leg, "attempt": attempt, "status": status,
            "answerTime": if answered { serde_json::json!("2026-11-22T10:00:30.000+0000") } else { serde_json::Value::Null },
            "causeCode": cause, "sipCode": "", "causeCodeDescription": ""})
    };
    let cdr = serde_json::json!({
        "eventType": "CDR", "correlationId": id, "callStatus": "COMPLETED",
        "participants": [
            part("9810000001", "from", 1, "BUSY", "17"),
            part("9810000001", "from", 2, "COMPLETED", "16"),
            part("9810000002", "to", 1, "NO_ANSWER", "19"),
            part("9810000003", "to", 2, "COMPLETED", "16"),
        ],
    })
    .to_string();
    assert_eq!(post_json(&d, &path, &cdr), 200);
    d.wait_log(&format!(
        "call {id}: Airtel's CDR agrees with the call's end (completed)"
    ));
    let call = d.call(&id);
    assert_eq!(call["events"].as_array().unwrap().len(), seen);
    assert_eq!(call["legs"].as_array().unwrap().len(), 4);
}
