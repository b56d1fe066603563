//! The native API: `POST /v1/calls` with sides of participants, strategies and
//! retries, followed to the end with legs, CDR and callbacks; partners see only
//! their own calls; every refusal is a problem document and a row.

use base64::Engine;

use crate::common::*;

pub const USER: &str = "crm";
pub const PASSWORD: &str = "crm-password-0123456789";
const OTHER: &str = "other";
const OTHER_PASSWORD: &str = "other-password-0123456789";
const CB_SECRET: &str = "callback-secret-0123456789";

/// Partners `crm` and `other` on the instant simulator (busy 1555000*, no answer
/// 1555001*), and `crm-xip` on an XIP upstream that is never reached.
pub fn config(callback_url: &str) -> String {
    base_config(&format!(
        r#"
[callbacks]
backoff = "20ms"
max_backoff = "100ms"

[[partner]]
id = "crm"
dialects = ["native"]
username = "{USER}"
password = "{PASSWORD}"
provider = "sim"
time_limit = 600
callback_url = "{callback_url}"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["{CB_SECRET}"]

[[partner]]
id = "other"
dialects = ["native"]
username = "{OTHER}"
password = "{OTHER_PASSWORD}"
provider = "sim"

[[partner]]
id = "crm-xip"
dialects = ["native"]
username = "crm-xip"
password = "{PASSWORD}"
provider = "c2c"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
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

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn post(d: &Daemon, auth: Option<(&str, &str)>, content_type: &str, body: &str) -> Response {
    let auth = auth
        .map(|(u, p)| format!("Authorization: Basic {}\r\n", basic(u, p)))
        .unwrap_or_default();
    request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

pub fn place(d: &Daemon, body: &serde_json::Value) -> Response {
    post(
        d,
        Some((USER, PASSWORD)),
        "application/json",
        &body.to_string(),
    )
}

pub fn get_as(d: &Daemon, user: &str, password: &str, path: &str) -> Response {
    request(
        d.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
            basic(user, password)
        ),
    )
}

fn json_of(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

fn side(numbers: &[(&str, u8)], strategy: &str) -> serde_json::Value {
    serde_json::json!({
        "strategy": strategy,
        "participants": numbers
            .iter()
            .map(|(n, r)| serde_json::json!({ "number": n, "retries": r }))
            .collect::<Vec<_>>(),
    })
}

#[test]
fn a_call_with_retries_and_a_parallel_side_is_followed_to_the_end() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&config(&rx.url()));
    // A: a busy agent tried twice, then one who answers. B: a phone that rings
    // out and one that answers, rung together.
    let r = place(
        &d,
        &serde_json::json!({
            "a": side(&[("+15550001111", 1), ("+16045551234", 0)], "sequential"),
            "b": side(&[("+15550012222", 0), ("+16045550000", 0)], "parallel"),
            "record": true,
            "reference": "crm-42",
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/calls/{id}").as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(json_of(&r)["id"], id.as_str());

    let kinds = [
        "originating",
        "accepted",
        "a_ringing",
        "a_ended_busy",
        "a_ringing",
        "a_ended_busy",
        "a_ringing",
        "a_answered",
        "b_ringing",
        "b_ringing",
        "b_ended_no_answer",
        "b_answered",
        "bridged",
        "recording",
        "a_ended_normal",
    ];
    rx.wait_requests(kinds.len());
    let got: Vec<serde_json::Value> = rx
        .requests()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    got.iter().for_each(crate::openapi::check_callback);
    let seen: Vec<&str> = got.iter().map(|b| b["event"].as_str().unwrap()).collect();
    assert_eq!(seen, kinds);
    let legs: Vec<(String, i64, String)> = got
        .iter()
        .filter(|b| !b["leg"].is_null())
        .map(|b| {
            (
                b["leg"]["side"].as_str().unwrap().to_string(),
                b["leg"]["attempt"].as_i64().unwrap(),
                b["leg"]["number"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(legs[0], ("a".into(), 1, "+15550001111".into()));
    assert_eq!(legs[2], ("a".into(), 2, "+15550001111".into()));
    assert_eq!(legs[4], ("a".into(), 3, "+16045551234".into()));
    assert_eq!(legs[7], ("b".into(), 2, "+16045550000".into()));
    assert!(got.iter().all(|b| b["reference"] == "crm-42"));
    let last = got.last().unwrap();
    assert_eq!(
        (last["state"].as_str(), last["cause"].as_i64()),
        (Some("completed"), Some(16))
    );
    assert!(got[13]["recording"].as_str().unwrap().contains(&id));

    // The partner reads its call back: every leg, the CDR with its recording.
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let r = get_as(&d, USER, PASSWORD, &format!("/v1/calls/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    crate::openapi::check("get", "/v1/calls/{id}", &r);
    let call = json_of(&r);
    assert_eq!(call["state"], "completed");
    assert_eq!(call["reference"], "crm-42");
    assert!(
        call.get("upstream_request").is_none(),
        "partners are not shown what went upstream"
    );
    let legs: Vec<(&str, i64, &str)> = call["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["side"].as_str().unwrap(),
                l["attempt"].as_i64().unwrap(),
                l["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        legs,
        [
            ("a", 1, "busy"),
            ("a", 2, "busy"),
            ("a", 3, "hung_up"),
            ("b", 1, "no_answer"),
            ("b", 2, "hung_up")
        ]
    );
    assert_eq!(call["cdr"]["state"], "completed");
    assert_eq!(call["cdr"]["recording"], got[13]["recording"]);
    assert_eq!(call["plan"]["b"]["strategy"], "parallel");
}

#[test]
fn round_robin_moves_the_pool_on_with_every_call() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&config(&rx.url()));
    let pool = side(&[("+16045550001", 0), ("+16045550002", 0)], "round_robin");
    let mut first = Vec::new();
    for _ in 0..3 {
        let r = place(
            &d,
            &serde_json::json!({ "a": pool, "b": side(&[("+16045550000", 0)], "sequential") }),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.call_id();
        d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
        first.push(
            d.call(&id)["legs"][0]["number"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(first, ["+16045550001", "+16045550002", "+16045550001"]);
}

#[test]
fn a_partner_sees_and_hangs_up_only_its_own_calls() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&config(&rx.url()));
    let call = serde_json::json!({
        "a": side(&[("+16045551234", 0)], "sequential"),
        "b": side(&[("+15550001234", 0)], "sequential"),
    });
    let mine = place(&d, &call).call_id();
    d.wait_log(&format!("call {mine}: b_ended_busy -> failed"));
    let theirs = post(
        &d,
        Some((OTHER, OTHER_PASSWORD)),
        "application/json",
        &call.to_string(),
    );
    assert_eq!(theirs.status, 201, "{}", theirs.text());
    let theirs = theirs.call_id();
    d.wait_log(&format!("call {theirs}: b_ended_busy -> failed"));

    // Another partner's call is not there for them; the operator sees both.
    assert_eq!(
        get_as(&d, USER, PASSWORD, &format!("/v1/calls/{theirs}")).status,
        404
    );
    assert_eq!(
        get_as(&d, USER, PASSWORD, &format!("/v1/calls/{theirs}/callbacks")).status,
        404
    );
    let hang = request(
        d.addr,
        &format!(
            "POST /v1/calls/{theirs}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            basic(USER, PASSWORD)
        ),
    );
    assert_eq!(hang.status, 404);
    let list = json_of(&get_as(&d, USER, PASSWORD, "/v1/calls"));
    let ids: Vec<&str> = list["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    assert_eq!(
        get_as(&d, USER, PASSWORD, "/v1/calls?partner=other").status,
        403
    );
    let all = json_of(&d.admin_get("/v1/calls", TOKEN));
    assert_eq!(all["calls"].as_array().unwrap().len(), 2);
    let partners = json_of(&get_as(&d, USER, PASSWORD, "/v1/partners"));
    assert_eq!(partners["partners"].as_array().unwrap().len(), 1);

    // Filters: number on any side, state, and a time window.
    let by_number = json_of(&d.admin_get("/v1/calls?number=%2B15550001234&state=failed", TOKEN));
    assert_eq!(by_number["calls"].as_array().unwrap().len(), 2);
    let none = json_of(&d.admin_get("/v1/calls?until=2000-01-01T00:00:00Z", TOKEN));
    assert!(none["calls"].as_array().unwrap().is_empty());
    let since = json_of(&d.admin_get("/v1/calls?since=2000-01-01T00:00:00Z&partner=crm", TOKEN));
    assert_eq!(since["calls"].as_array().unwrap().len(), 1);
    let page = json_of(&d.admin_get("/v1/calls?limit=1", TOKEN));
    let next = page["next_before"].as_str().unwrap().to_string();
    let rest = json_of(&d.admin_get(&format!("/v1/calls?limit=1&before={next}"), TOKEN));
    assert_eq!(rest["calls"][0]["id"], mine.as_str());
    assert_eq!(d.admin_get("/v1/calls?since=yesterday", TOKEN).status, 400);
}

#[test]
fn every_refusal_is_a_problem_with_a_row_an_operator_can_read() {
    let d = Daemon::start(&config("http://127.0.0.1:9/cb"));
    let ok = serde_json::json!({
        "a": side(&[("+16045551234", 0)], "sequential"),
        "b": side(&[("+16045550000", 0)], "sequential"),
    })
    .to_string();
    let cases: Vec<(Response, u16, &str)> = vec![
        (post(&d, None, "application/json", &ok), 401, "unauthorized"),
        (
            post(
                &d,
                Some((USER, "wrong-password-000000")),
                "application/json",
                &ok,
            ),
            401,
            "unauthorized",
        ),
        (
            post(&d, Some((USER, PASSWORD)), "text/plain", &ok),
            415,
            "unsupported_media_type",
        ),
        (
            post(&d, Some((USER, PASSWORD)), "application/json", "{\"a\":"),
            400,
            "malformed",
        ),
        (
            post(
                &d,
                Some((USER, PASSWORD)),
                "application/json",
                "{\"a\":{},\"b\":{},\"x\":1}",
            ),
            400,
            "malformed",
        ),
        (
            post(
                &d,
                Some((USER, PASSWORD)),
                "application/json",
                &serde_json::json!({
                    "a": side(&[("+1604-555", 9)], "sequential"),
                    "b": side(&[], "zigzag"),
                    "time_limit": 601,
                    "callback_url": "http://evil.example/cb",
                })
                .to_string(),
            ),
            422,
            "invalid",
        ),
        (
            post(
                &d,
                Some(("crm-xip", PASSWORD)),
                "application/json",
                &serde_json::json!({
                    "a": side(&[("+16045551234", 1)], "sequential"),
                    "b": side(&[("+16045550000", 0)], "sequential"),
                })
                .to_string(),
            ),
            422,
            "provider_refuses",
        ),
    ];
    for (r, status, code) in &cases {
        assert_eq!(r.status, *status, "{}", r.text());
        crate::openapi::check("post", "/v1/calls", r);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let p = json_of(r);
        assert_eq!(
            (p["status"].as_u64(), p["code"].as_str()),
            (Some(u64::from(*status)), Some(*code))
        );
        assert_eq!(p["call_id"].as_str(), Some(r.call_id().as_str()));
    }
    assert!(cases[0]
        .0
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    let invalid = json_of(&cases[5].0);
    let fields: Vec<&str> = invalid["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "a.participants[0].number",
        "a.participants[0].retries",
        "b.strategy",
        "b.participants",
        "time_limit",
        "callback_url",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }

    // Each left a rejected row; who tried is there, the password is not.
    for (r, _, _) in &cases {
        let call = d.call(&r.call_id());
        assert_eq!(
            (call["dialect"].as_str(), call["state"].as_str()),
            (Some("native"), Some("rejected"))
        );
        // What was answered is what is recorded, byte for byte.
        assert_eq!(call["result"]["body"], r.text().as_str());
        assert_eq!(call["result"]["status"], r.status);
    }
    let wrong = d.call(&cases[1].0.call_id());
    assert!(
        wrong["error"]
            .as_str()
            .unwrap()
            .contains("username \"crm\""),
        "{wrong}"
    );
    assert!(!wrong.to_string().contains("wrong-password"));
    assert_eq!(d.call(&cases[5].0.call_id())["partner_id"], "crm");
}

/// Every outcome, through the native API with a real callback receiver: the
/// call's state, each leg's state and cause, the CDR, and the callbacks, all of
/// them and in order.
#[test]
fn every_outcome_gives_the_right_legs_cdr_and_ordered_callbacks() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    // Phones answer at once and would talk for an hour: the 1 s time limit ends
    // every bridged call. 1555002* fails, 1555003* rings for ever.
    let config = config(&rx.url())
        .replace("talk = \"0s\"", "talk = \"1h\"")
        .replace(
            "no_answer = [\"1555001*\"]",
            "no_answer = [\"1555001*\"]\nfail = [\"1555002*\"]\nsilent = [\"1555003*\"]",
        );
    let mut d = Daemon::start(&config);
    const OK_A: &str = "+16045551234";
    const OK_B: &str = "+16045550000";
    struct Case {
        a: &'static str,
        b: &'static str,
        state: &'static str,
        events: &'static [&'static str],
        legs: &'static [(&'static str, &'static str, i64)],
        cause: i64,
    }
    let head = ["originating", "accepted", "a_ringing"];
    let cases = [
        Case {
            a: OK_A,
            b: OK_B,
            state: "completed",
            events: &[
                "a_answered",
                "b_ringing",
                "b_answered",
                "bridged",
                "a_ended_normal",
            ],
            legs: &[("a", "hung_up", 16), ("b", "hung_up", 16)],
            cause: 16,
        },
        Case {
            a: "+15550001111",
            b: OK_B,
            state: "failed",
            events: &["a_ended_busy"],
            legs: &[("a", "busy", 17)],
            cause: 17,
        },
        Case {
            a: "+15550011111",
            b: OK_B,
            state: "failed",
            events: &["a_ended_no_answer"],
            legs: &[("a", "no_answer", 19)],
            cause: 19,
        },
        Case {
            a: "+15550021111",
            b: OK_B,
            state: "failed",
            events: &["a_ended_failed"],
            legs: &[("a", "failed", 34)],
            cause: 34,
        },
        Case {
            a: OK_A,
            b: "+15550001111",
            state: "failed",
            events: &["a_answered", "b_ringing", "b_ended_busy"],
            legs: &[("a", "hung_up", 16), ("b", "busy", 17)],
            cause: 17,
        },
        Case {
            a: OK_A,
            b: "+15550011111",
            state: "failed",
            events: &["a_answered", "b_ringing", "b_ended_no_answer"],
            legs: &[("a", "hung_up", 16), ("b", "no_answer", 19)],
            cause: 19,
        },
        Case {
            a: "+15550031111",
            b: OK_B,
            state: "failed",
            events: &["cancelled"],
            legs: &[("a", "cancelled", 16)],
            cause: 16,
        },
    ];
    for c in &cases {
        let r = place(
            &d,
            &serde_json::json!({
                "a": side(&[(c.a, 0)], "sequential"),
                "b": side(&[(c.b, 0)], "sequential"),
                "time_limit": 1,
            }),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.call_id();
        let last = *c.events.last().unwrap();
        if last == "cancelled" {
            // It rings for ever: the partner hangs it up.
            d.wait_log(&format!("call {id}: a_ringing -> dialing_a"));
            let hang = request(
                d.addr,
                &format!(
                    "POST /v1/calls/{id}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    basic(USER, PASSWORD)
                ),
            );
            assert_eq!(hang.status, 200, "{}", hang.text());
        } else {
            d.wait_log(&format!("call {id}: {last} -> {}", c.state));
        }
        let call = d.call(&id);
        assert_eq!(call["state"], c.state, "{}: {call}", c.a);
        let legs: Vec<(&str, &str, i64)> = call["legs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["side"].as_str().unwrap(),
                    l["state"].as_str().unwrap(),
                    l["cause"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(legs, c.legs, "{} -> {}", c.a, c.b);
        assert_eq!(call["cdr"]["state"], c.state);
        assert_eq!(call["cdr"]["cause"], c.cause);
        assert_eq!(call["cdr"]["bridged"].is_null(), c.state != "completed");
        if c.state == "completed" {
            // Ended by the 1 s time limit, not by the hour of talk.
            assert!(
                call["cdr"]["billable_s"].as_i64().unwrap() <= 2,
                "{}",
                call["cdr"]
            );
        }

        // The callbacks: every event once, in order, the last one final.
        let want: Vec<&str> = head.iter().chain(c.events).copied().collect();
        let mine = |all: &[Received]| -> Vec<serde_json::Value> {
            all.iter()
                .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap())
                .filter(|b| b["call_id"] == id.as_str())
                .collect()
        };
        let got = loop {
            // Deliveries of this call land one by one: each is a request the
            // receiver counts, so wait for the receiver's next one. One snapshot
            // is both counted and looked at, so none slips between the two.
            let all = rx.requests();
            let got = mine(&all);
            if got.len() >= want.len() {
                break got;
            }
            rx.wait_requests(all.len() + 1);
        };
        let kinds: Vec<&str> = got.iter().map(|b| b["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, want, "{} -> {}", c.a, c.b);
        let seqs: Vec<i64> = got.iter().map(|b| b["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=want.len() as i64).collect::<Vec<_>>());
        let end = got.last().unwrap();
        assert_eq!(
            (end["state"].as_str(), end["cause"].as_i64()),
            (Some(c.state), Some(c.cause))
        );
    }
}
