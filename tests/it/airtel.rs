//! The Airtel front door (seed 001): the seed's sample request, its exact
//! answers and every error code of its list, strategies with the simulator, and
//! the real-time events and CDR each callback URL gets by its event type.

use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

const USER: &str = "acme";
const PASSWORD: &str = "acme-password-0123456789";
const A: &str = "9810000001";
const B: &str = "9810000002";
const CID: &str = "8000000001";

/// `acme` on the simulator (busy 919000*, no answer 919100*), and `upstream` on
/// an XIP server that cannot be reached.
fn config() -> String {
    let base = base_config(&format!(
        r#"
[callbacks]
backoff = "20ms"
max_backoff = "100ms"

[[partner]]
id = "acme"
dialects = ["airtel"]
username = "{USER}"
password = "{PASSWORD}"
customer_id = "CUST-1"
call_flow_ids = ["FLOW-1"]
caller_ids = ["{CID}", "8000000002"]
provider = "sim"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["callback-secret-0123456789"]

[[partner.agent_pool]]
id = "sales"
agents = ["9820000001", "9820000002"]

[[partner]]
id = "upstream"
dialects = ["airtel"]
username = "upstream"
password = "upstream-password-0123456789"
customer_id = "CUST-2"
call_flow_ids = ["FLOW-2"]
provider = "c2c"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "1s"
busy = ["919000*"]
no_answer = ["919100*"]

[[provider]]
name = "c2c"
kind = "xip"
url = "http://127.0.0.1:9/c2c"
secret = "upstream-secret"
timeout = "500ms"
"#
    ));
    base.replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\npublic_url = \"https://pbx.example.com:8443/\"",
    )
}

/// The seed's sample request, its placeholders filled in.
fn sample(cdr_url: &str, events_url: &str) -> Value {
    json!({
        "callFlowId": "FLOW-1",
        "customerId": "CUST-1",
        "callType": "OUTBOUND",
        "callerId": CID,
        "callFlowConfiguration": {
            "initiateCall_1": {
                "callerId": CID,
                "mergingStrategy": "SEQUENTIAL",
                "participants": [
                    { "participantAddress": A, "callerId": CID, "participantName": "A", "maxRetries": 1, "maxTime": 0 }
                ],
                "maxTime": 0,
                "callBackURLs": [
                    { "eventType": "CDR", "notifyURL": cdr_url, "method": "POST", "headers": {} },
                    { "eventType": "ALL", "notifyURL": events_url, "method": "POST", "headers": { "X-Api-Key": "k-123" } }
                ]
            },
            "addParticipant_1": {
                "mergingStrategy": "SEQUENTIAL",
                "maxTime": 0,
                "participants": [
                    { "participantAddress": B, "callerId": CID, "participantName": "B", "maxRetries": 1, "maxTime": 0, "enableEarlyMedia": true }
                ]
            },
            "record": { "enabled": true }
        }
    })
}

fn post_as(d: &Daemon, auth: Option<(&str, &str)>, content_type: &str, body: &str) -> Response {
    let auth = auth
        .map(|(u, p)| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {b64}\r\n")
        })
        .unwrap_or_default();
    request(
        d.addr,
        &format!(
            "POST /v2/execute/workflow HTTP/1.1\r\nHost: c2cd\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn post(d: &Daemon, body: &Value) -> Response {
    post_as(
        d,
        Some((USER, PASSWORD)),
        "application/json",
        &body.to_string(),
    )
}

fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

fn bodies(rx: &Upstream) -> Vec<Value> {
    rx.requests()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

fn is_airtel_time(t: &str) -> bool {
    // 2020-02-26T12:19:46.399+0000
    t.len() == 28 && t.ends_with("+0000") && &t[10..11] == "T" && &t[19..20] == "."
}

#[test]
fn the_seeds_sample_connects_and_each_url_gets_its_event_types() {
    let cdr_rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let events_rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&config());
    let r = post(&d, &sample(&cdr_rx.url(), &events_rx.url()));
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.call_id();
    assert_eq!(
        json_of(&r),
        json!({ "status": "success", "correlationId": id })
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));

    // ALL: every real-time event, then the CDR; CDR: the CDR only.
    let names = [
        "Initiated",
        "Ringing",
        "Answered",
        "Ringing",
        "Answered",
        "Merged",
        "RecordingAvailable",
        "Removed",
    ];
    events_rx.wait_requests(names.len() + 1);
    cdr_rx.wait_requests(1);
    let events = bodies(&events_rx);
    let got: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("CDR"))
        .collect();
    assert_eq!(got[..names.len()], names, "{events:#?}");
    for e in &events[..names.len()] {
        assert!(is_airtel_time(e["time"].as_str().unwrap()), "{e}");
        assert_eq!(e["correlationId"], id.as_str());
    }
    assert_eq!(
        (
            events[1]["eventType"].as_str(),
            events[1]["participantAddress"].as_str()
        ),
        (Some("CALL"), Some(A))
    );
    assert_eq!(events[3]["participantAddress"], B);
    assert_eq!(events[6]["eventType"], "RECORD");
    let removed = &events[7];
    assert_eq!(
        removed["metaData"],
        json!({ "causeCode": "16", "sipCode": "200", "causeCodeDescription": "Normal call clearing" })
    );
    assert!(events_rx
        .requests()
        .iter()
        .all(|r| r.header("x-api-key") == Some("k-123")));
    assert!(cdr_rx
        .requests()
        .iter()
        .all(|r| r.header("x-api-key").is_none()));

    let cdr = &bodies(&cdr_rx)[0];
    assert_eq!(cdr, &events[names.len()], "both URLs get the same CDR");
    assert_eq!(
        (cdr["eventType"].as_str(), cdr["callStatus"].as_str()),
        (Some("CDR"), Some("COMPLETED"))
    );
    assert_eq!(
        (cdr["callFlowId"].as_str(), cdr["customerId"].as_str()),
        (Some("FLOW-1"), Some("CUST-1"))
    );
    let link = format!("https://pbx.example.com:8443/v1/calls/{id}/recording");
    assert_eq!(cdr["recordingUrl"], link.as_str());
    assert_eq!(events[6]["metaData"]["recordingUrl"], link.as_str());
    let parts: Vec<(&str, &str, &str)> = cdr["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["participantAddress"].as_str().unwrap(),
                p["participantName"].as_str().unwrap(),
                p["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(parts, [(A, "A", "COMPLETED"), (B, "B", "COMPLETED")]);
    assert!(cdr["billableDuration"].as_i64().unwrap() >= 1);

    // The call as stored: numbers E.164 with the country code, recorded.
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let call = d.call(&id);
    assert_eq!(
        (
            call["a"]["number"].as_str(),
            call["a"]["caller_id"].as_str()
        ),
        (Some("+919810000001"), Some("+918000000001"))
    );
    assert_eq!(call["plan"]["record"], true);

    // The recording is served to the partner that owns the call, and no one else.
    let get = |user: &str, password: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request(
            d.addr,
            &format!("GET /v1/calls/{id}/recording HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {b64}\r\nConnection: close\r\n\r\n"),
        )
    };
    let wav = get(USER, PASSWORD);
    assert_eq!(
        (wav.status, wav.header("content-type")),
        (200, Some("audio/wav"))
    );
    assert_eq!(
        (&wav.body[..4], &wav.body[8..12]),
        (&b"RIFF"[..], &b"WAVE"[..])
    );
    assert!(wav.body.len() >= 58 + 8000, "a second of audio at least");
    assert_eq!(get("upstream", "upstream-password-0123456789").status, 404);
}

#[test]
fn retries_parallel_and_round_robin_are_played_and_reported() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&config());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = sample(&rx.url(), &rx.url());
        v["callFlowConfiguration"]["initiateCall_1"]["callBackURLs"] =
            json!([{ "eventType": "CDR", "notifyURL": rx.url() }]);
        f(&mut v);
        v
    };
    // A busy A, tried twice: two BUSY legs, the call fails with 17.
    let r = post(
        &d,
        &with(&|v| {
            v["callFlowConfiguration"]["initiateCall_1"]["participants"][0]["participantAddress"] =
                json!("9000000001")
        }),
    );
    let id = r.call_id();
    d.wait_log(&format!("call {id}: a_ended_busy -> failed"));
    // Parallel B: one rings out, the other answers.
    let r = post(
        &d,
        &with(&|v| {
            v["callFlowConfiguration"]["addParticipant_1"]["mergingStrategy"] = json!("PARALLEL");
            v["callFlowConfiguration"]["addParticipant_1"]["participants"] =
                json!([{ "participantAddress": "9100000001" }, { "participantAddress": B }]);
        }),
    );
    let id2 = r.call_id();
    d.wait_log(&format!("call {id2}: a_ended_normal -> completed"));
    // An A that does not answer, tried twice: the call fails with 19.
    let r = post(
        &d,
        &with(&|v| {
            v["callFlowConfiguration"]["initiateCall_1"]["participants"][0]["participantAddress"] =
                json!("9100000009")
        }),
    );
    let id3 = r.call_id();
    d.wait_log(&format!("call {id3}: a_ended_no_answer -> failed"));
    rx.wait_requests(3);
    let cdrs = bodies(&rx);
    let cdr = |id: &str| {
        cdrs.iter()
            .find(|c| c["correlationId"] == id)
            .unwrap()
            .clone()
    };
    let busy = cdr(&id);
    assert_eq!(busy["callStatus"], "FAILED");
    assert_eq!(
        (
            busy["causeCode"].as_str(),
            busy["causeCodeDescription"].as_str()
        ),
        (Some("17"), Some("User busy"))
    );
    let statuses: Vec<&str> = busy["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["BUSY", "BUSY"]);
    assert_eq!(busy["participants"][0]["sipCode"], "486");
    let unanswered = cdr(&id3);
    assert_eq!(
        (
            unanswered["callStatus"].as_str(),
            unanswered["causeCode"].as_str(),
            unanswered["participants"][1]["status"].as_str(),
            unanswered["participants"][1]["sipCode"].as_str()
        ),
        (Some("FAILED"), Some("19"), Some("NO_ANSWER"), Some("480"))
    );
    let par = cdr(&id2);
    let statuses: Vec<(&str, &str)> = par["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["participantAddress"].as_str().unwrap(),
                p["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (A, "COMPLETED"),
            ("9100000001", "NO_ANSWER"),
            (B, "COMPLETED")
        ]
    );

    // ROUND ROBIN takes the pool's agents in turn.
    let mut first = Vec::new();
    for _ in 0..2 {
        let r = post(
            &d,
            &with(&|v| {
                let b = &mut v["callFlowConfiguration"]["addParticipant_1"];
                b["mergingStrategy"] = json!("ROUND ROBIN");
                b["participants"] = json!([]);
                b["agentPoolId"] = json!("sales");
            }),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.call_id();
        d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
        let legs = d.call(&id)["legs"].as_array().unwrap().clone();
        first.push(
            legs.iter().find(|l| l["side"] == "b").unwrap()["number"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(first, ["+919820000001", "+919820000002"]);
}

#[test]
fn every_error_code_is_answered_in_the_seeds_shape_and_leaves_a_row() {
    let d = Daemon::start(&config());
    let url = "http://127.0.0.1:9/cb";
    type Change = Box<dyn Fn(&mut Value)>;
    let at = |path: &'static [&'static str], v: Value| -> Change {
        Box::new(move |body: &mut Value| {
            let mut cur = &mut *body;
            for p in &path[..path.len() - 1] {
                cur = if let Ok(i) = p.parse::<usize>() {
                    &mut cur[i]
                } else {
                    &mut cur[*p]
                };
            }
            let last = path[path.len() - 1];
            match (&v, cur.as_object_mut()) {
                (Value::Null, Some(o)) => {
                    o.remove(last);
                }
                _ => cur[last] = v.clone(),
            }
        })
    };
    const FROM: &str = "initiateCall_1";
    const TO: &str = "addParticipant_1";
    const C: &str = "callFlowConfiguration";
    let cases: Vec<(Change, &str, &str)> = vec![
        (
            Box::new(|v| *v = json!({})),
            "CLICK_TO_CALL_REQUEST_NULL_ERROR",
            "click to call request cannot be null/blank",
        ),
        (
            at(&["callFlowId"], Value::Null),
            "CALL_FLOW_ID_NULL_ERROR",
            "callflowId cannot be null/blank",
        ),
        (
            at(&["callFlowId"], json!("FLOW-9")),
            "INCORRECT_CALL_FLOW_ID",
            "incorrect call flow id",
        ),
        (
            at(&["customerId"], json!("")),
            "CUSTOMER_ID_NULL_ERROR",
            "customerId cannot be null/blank",
        ),
        (
            at(&["customerId"], json!("CUST-9")),
            "INCORRECT_CUSTOMER_ID",
            "incorrect customerId",
        ),
        (
            at(&["callerId"], json!("12")),
            "CALLER_ID_REGEX_ERROR",
            "caller Id not valid",
        ),
        (
            at(
                &[C, FROM, "participants", "0", "callerId"],
                json!("80000x0001"),
            ),
            "CALLER_ID_REGEX_ERROR",
            "Incorrect number",
        ),
        (
            at(
                &[C, FROM, "participants", "0", "callerId"],
                json!("8000000009"),
            ),
            "INVALID_CALLER_ID",
            "invalid called id",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("callerId");
                v[C][FROM].as_object_mut().unwrap().remove("callerId");
                v[C][FROM]["participants"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("callerId");
            }),
            "CALLER_ID_NULL_ERROR",
            "caller Id required",
        ),
        (
            at(
                &[C, TO, "participants", "0", "participantAddress"],
                json!(A),
            ),
            "DUPLICATE_PARTICIPANT_ADDRESS_FOUND",
            "participant address cannot be duplicate",
        ),
        (
            at(&[C, FROM], Value::Null),
            "FROM_BODY_NULL_ERROR",
            "from body cannot be null/blank",
        ),
        (
            at(&[C, TO], Value::Null),
            "TO_BODY_NULL_ERROR",
            "to body cannot be null/blank",
        ),
        (
            at(&[C, TO, "mergingStrategy"], json!("ROUND ROBIN")),
            "ROUNDROBIN_PARTICIPANT_DATA_NOT_ALLOWED",
            "Participant List not allowed in case of Round Robin. Please provide Agent pool Id",
        ),
        (
            Box::new(|v| {
                v[C][TO]["mergingStrategy"] = json!("ROUND ROBIN");
                v[C][TO]["participants"] = json!([]);
            }),
            "ROUNDROBIN_AGENT_ID_MISSING",
            "Agent Pool Id cannot be null/empty in case of Round Robin",
        ),
        (
            at(&[C, FROM, "participants"], json!([])),
            "FROM_NUMBER_NULL_ERROR",
            "There should be atleast one participant in from",
        ),
        (
            at(
                &[C, FROM, "participants", "0", "participantAddress"],
                json!(""),
            ),
            "FROM_PARTICIPANT_NUMBER_NULL_ERROR",
            "from participant number null error",
        ),
        (
            at(
                &[C, FROM, "participants", "0", "participantAddress"],
                json!("+919810000001"),
            ),
            "FROM_PARTICIPANT_NUMBER_REGEX_ERROR",
            "from participant number not valid",
        ),
        (
            at(&[C, FROM, "participants", "0", "maxRetries"], json!(4)),
            "FROM_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE",
            "Max retries can't be greater than 3",
        ),
        (
            at(&[C, TO, "participants"], json!([])),
            "TO_NUMBER_NULL_ERROR",
            "There should be atleast one participant in to",
        ),
        (
            at(
                &[C, TO, "participants", "0", "participantAddress"],
                Value::Null,
            ),
            "TO_PARTICIPANT_NUMBER_NULL_ERROR",
            "to participant number null error",
        ),
        (
            at(
                &[C, TO, "participants", "0", "participantAddress"],
                json!("98100"),
            ),
            "TO_PARTICIPANT_NUMBER_REGEX_ERROR",
            "to participant number not valid",
        ),
        (
            at(&[C, TO, "participants", "0", "maxRetries"], json!(9)),
            "TO_PARTICIPANT_MAX_RETRIES_GREATER_THAN_REQUIRED_VALUE",
            "Max retries can't be greater than 3",
        ),
        (
            at(&[C, TO, "mergingStrategy"], json!("CONFERENCE")),
            "CONFERENCE_MERGING_STRATEGY_NOT_ALLOWED_FOT_TO_NUMBER",
            "CONFERENCE merging strategy not allowed in toNumber",
        ),
    ];
    for (i, (change, code, message)) in cases.iter().enumerate() {
        let mut body = sample(url, url);
        change(&mut body);
        let r = post(&d, &body);
        assert_eq!(r.status, 400, "case {i} {code}: {}", r.text());
        assert_eq!(
            json_of(&r),
            json!({
                "httpStatus": 400, "displayMessage": null, "errorMessage": message, "errorCode": code,
                "errorType": null, "apiPath": null, "errorDetails": null, "resourceLayer": "CONTROLLER", "errorMeta": null
            }),
            "case {i}"
        );
        let row = d.call(&r.call_id());
        assert_eq!(
            (
                row["dialect"].as_str(),
                row["state"].as_str(),
                row["result"]["code"].as_str()
            ),
            (Some("airtel"), Some("rejected"), Some(*code))
        );
    }

    // c2cd's own codes, in the same shape, for what the seed's list lacks.
    let mut own = sample(url, url);
    own["callType"] = json!("INBOUND");
    assert_eq!(
        json_of(&post(&d, &own))["errorCode"],
        "CALL_TYPE_NOT_SUPPORTED"
    );
    let mut own = sample(url, url);
    own[C][FROM]["callBackURLs"][0]["notifyURL"] = json!("https://evil.example/cdr");
    assert_eq!(
        json_of(&post(&d, &own))["errorCode"],
        "CALLBACK_URL_NOT_ALLOWED"
    );
    let mut own = sample(url, url);
    own[C][FROM]["callBackURLs"][1]["headers"] = json!({ "Content-Type": "text/plain" });
    assert_eq!(json_of(&post(&d, &own))["errorCode"], "INVALID_PARAMETER");
    let r = post_as(&d, Some((USER, PASSWORD)), "text/plain", "{}");
    assert_eq!(
        (r.status, json_of(&r)["errorCode"].as_str()),
        (415, Some("UNSUPPORTED_MEDIA_TYPE"))
    );

    // 401 and 500 exactly as the seed has them.
    let r = post_as(
        &d,
        Some((USER, "wrong-password-000000")),
        "application/json",
        &sample(url, url).to_string(),
    );
    assert_eq!(
        (r.status, json_of(&r)),
        (401, json!({ "message": "Unauthorized" }))
    );
    let mut up = sample(url, url);
    up["callFlowId"] = json!("FLOW-2");
    up["customerId"] = json!("CUST-2");
    up[C][FROM]["callBackURLs"] = json!([]);
    up[C][FROM]["participants"][0]["maxRetries"] = json!(0);
    up[C][TO]["participants"][0]["maxRetries"] = json!(0);
    up[C].as_object_mut().unwrap().remove("record");
    let r = post_as(
        &d,
        Some(("upstream", "upstream-password-0123456789")),
        "application/json",
        &up.to_string(),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        json_of(&r),
        json!({
            "httpStatus": 500, "displayMessage": null, "errorMessage": "2", "errorCode": "AIRTEL_ONLINE_UNCAUGHT_ERROR",
            "errorType": null, "apiPath": null, "errorDetails": null, "resourceLayer": "UNKNOWN", "errorMeta": null
        })
    );
    // Other methods and paths.
    let r = request(
        d.addr,
        "GET /v2/execute/workflow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = request(
        d.addr,
        "POST /v2/other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn guard_rails_answer_in_airtels_shape() {
    // acme replays a repeat within 30 s and gives an agent one call at a time.
    let listed = format!("caller_ids = [\"{CID}\", \"8000000002\"]");
    let text = config().replace(
        &listed,
        &format!("{listed}\ndedupe_window = \"30s\"\nmax_calls_per_b = 1"),
    );
    assert!(text.contains("max_calls_per_b = 1"));
    let d = Daemon::start(&text);
    let cb = "http://127.0.0.1:9/cb";
    let first = post(&d, &sample(cb, cb));
    assert_eq!(first.status, 200, "{}", first.text());
    let id = json_of(&first)["correlationId"]
        .as_str()
        .unwrap()
        .to_string();

    // The same A and B again: the first call's correlationId, nothing dialled.
    let again = post(&d, &sample(cb, cb));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(json_of(&again)["correlationId"], id.as_str());
    assert_eq!(again.header("c2c-replay"), Some("true"));

    // Another A for the same B while B is in the first call: B is busy.
    let mut other = sample(cb, cb);
    other["callFlowConfiguration"]["initiateCall_1"]["participants"][0]["participantAddress"] =
        "9810000003".into();
    let busy = post(&d, &other);
    assert_eq!(busy.status, 409, "{}", busy.text());
    assert_eq!(json_of(&busy)["errorCode"], "TO_PARTICIPANT_BUSY");
    assert!(busy.header("retry-after").is_some());

    // B on the blocklist: the seed's error body with c2cd's code.
    let db = d.db();
    c2cd_ok([
        "block",
        "add",
        &format!("+91{B}"),
        "--database",
        db.to_str().unwrap(),
    ]);
    let blocked = post(&d, &other);
    assert_eq!(blocked.status, 400, "{}", blocked.text());
    let v = json_of(&blocked);
    assert_eq!(v["errorCode"], "TO_PARTICIPANT_NUMBER_BLOCKED");
    assert_eq!(v["httpStatus"], 400);
    assert_eq!(v["resourceLayer"], "CONTROLLER");
}
