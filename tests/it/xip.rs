//! The XIP front door (seed 000) against a real upstream click-to-call server and
//! against the simulator.

use crate::common::*;

#[test]
fn get_sends_exactly_the_nine_parameters_and_passes_the_answer_back() {
    let up = Upstream::start(Behaviour::Reply(200, "text/x-c2c", "RESULT=QUEUED 4711"));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "RESULT=QUEUED 4711");
    assert_eq!(r.header("content-type"), Some("text/x-c2c"));
    let id = r.call_id();

    let got = up.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "GET");
    assert_eq!(got[0].path, "/c2c/call");
    let want_auth = md5_hex(&format!("upstream-secret{PARTNER}{REQUESTOR}{FULFILLMENT}"));
    let want: Vec<(String, String)> = [
        ("RequestorPhone", REQUESTOR),
        ("RequestorCID", "6045550000"),
        ("DestinationPhone", FULFILLMENT),
        ("DestinationCID", "6045551234"),
        ("PromptSet", "XIP1"),
        ("TimeLimit", "7200"),
        ("PartnerID", PARTNER),
        ("Source", "XIP1"),
        ("Auth", want_auth.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got[0].params(), want);

    let call = d.call(&id);
    assert_eq!(call["state"], "handed_off");
    assert_eq!(call["auth_ok"], true);
    assert_eq!(call["a"]["number"], "+16045551234");
    assert_eq!(call["b"]["number"], "+16045550000");
    assert_eq!(call["a"]["caller_id"], "6045550000");
    assert_eq!(
        call["upstream_request"]["params"]["Auth"],
        want_auth.as_str()
    );
    assert_eq!(call["upstream_request"]["url"], up.url().as_str());
    assert_eq!(call["result"]["status"], 200);
    assert_eq!(call["result"]["body"], "RESULT=QUEUED 4711");
    assert_eq!(call["received"]["query"], demo_query().as_str());
}

#[test]
fn post_form_and_per_partner_overrides_and_auth_fields() {
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", "OK"));
    let extra = r#"method = "POST"
auth_fields = ["PartnerID", "RequestorPhone", "DestinationPhone", "Source"]

[[partner]]
id = "777"
secret = "acme-secret"
provider = "c2c"
prompt_set = "ACME2"
source = "WEB"
time_limit = 600
"#;
    let d = Daemon::start(&xip_config(&up.url(), extra));
    // A short Requestor: the caller ID is the whole number, not 10 characters.
    let (a, b) = ("4930123456", "442079460000");
    let r = d.post_form(
        "/request/call.php",
        &xip_query(
            "777",
            a,
            b,
            &auth("acme-secret", "777", a, b).to_uppercase(),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.requests();
    assert_eq!(got[0].method, "POST");
    assert_eq!(
        got[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let p: std::collections::HashMap<_, _> = got[0].params().into_iter().collect();
    assert_eq!(p["RequestorCID"], "2079460000");
    assert_eq!(p["DestinationCID"], "4930123456");
    assert_eq!(p["PromptSet"], "ACME2");
    assert_eq!(p["Source"], "WEB");
    assert_eq!(p["TimeLimit"], "600");
    assert_eq!(p["Auth"], md5_hex(&format!("upstream-secret777{a}{b}WEB")));
}

#[test]
fn a_bad_auth_goes_upstream_as_bad_incoming_auth_and_the_answer_comes_back_verbatim() {
    let up = Upstream::start(Behaviour::Reply(401, "text/plain", "ERROR 7 auth"));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    for bad in ["0123456789abcdef0123456789abcdef", "", "not-hex"] {
        let r = d.get(&format!(
            "/request/call.php?{}",
            xip_query(PARTNER, REQUESTOR, FULFILLMENT, bad)
        ));
        assert_eq!(r.status, 401);
        assert_eq!(r.text(), "ERROR 7 auth");
        assert_eq!(d.call(&r.call_id())["auth_ok"], false);
    }
    // No Auth parameter at all is a bad Auth too.
    let r = d.get(&format!(
        "/request/call.php?PartnerID={PARTNER}&Requestor={REQUESTOR}&Fulfillment={FULFILLMENT}"
    ));
    assert_eq!(r.status, 401);
    let got = up.requests();
    assert_eq!(got.len(), 4);
    for g in &got {
        let p = g.params();
        assert_eq!(
            p.last().unwrap(),
            &("Auth".to_string(), "BadIncomingAuth".to_string())
        );
        assert_eq!(p[0], ("RequestorPhone".to_string(), REQUESTOR.to_string()));
        assert_eq!(p.len(), 9);
    }
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "failed");
    assert_eq!(
        call["upstream_request"]["params"]["Auth"],
        "BadIncomingAuth"
    );
}

#[test]
fn a_bad_auth_never_reaches_a_provider_that_cannot_refuse_it() {
    // A Spokn upstream has no BadIncomingAuth: asked, it would ring a
    // stranger's numbers. Behind it on the route, a simulator that can.
    let spokn = Upstream::start(Behaviour::Reply(
        200,
        "application/xml",
        "<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>200</code>\n    <desc>Request Successful</desc>\n  </c2c>\n</spokn>\n",
    ));
    let config = |route: &str| {
        base_config(&format!(
            r#"
[[partner]]
id = "{PARTNER}"
secret = "{SECRET}"
provider = {route}

[[provider]]
name = "spokn-up"
kind = "spokn"
url = "{url}"
username = "acct"
secret = "acct-password"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
"#,
            url = spokn.url()
        ))
    };
    let bad = |d: &Daemon| {
        d.get(&format!(
            "/request/call.php?{}",
            xip_query(
                PARTNER,
                REQUESTOR,
                FULFILLMENT,
                "0123456789abcdef0123456789abcdef"
            )
        ))
    };

    // Spokn alone: c2cd forces the failure itself, as the simulator would.
    let mut d = Daemon::start(&config("\"spokn-up\""));
    let r = bad(&d);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.form()["Result"], "100");
    assert_eq!(r.form()["Message"], "BadIncomingAuth");
    let call = d.call(&r.call_id());
    assert_eq!(call["auth_ok"], false);
    assert_eq!(call["state"], "rejected");
    assert!(call["provider"].is_null(), "{call}");
    d.wait_logged("no provider of its route takes BadIncomingAuth");
    // The same request with a good Auth does reach it: the recorder works.
    let good = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(good.status, 200, "{}", good.text());
    spokn.wait_requests(1);
    drop(d);

    // Spokn first, the simulator second: the simulator is asked, as
    // BadIncomingAuth, and Spokn is passed over.
    let d = Daemon::start(&config("[\"spokn-up\", \"sim\"]"));
    let r = bad(&d);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.form()["Result"], "100");
    let call = d.call(&r.call_id());
    assert_eq!(call["provider"], "sim");
    assert_eq!(
        call["upstream_request"]["params"]["Auth"],
        "BadIncomingAuth"
    );
    assert_eq!(
        spokn.requests().len(),
        1,
        "only the good request reached Spokn"
    );
}

#[test]
fn upstream_errors_are_passed_back_verbatim() {
    let up = Upstream::start(Behaviour::Reply(
        500,
        "application/json",
        "{\"error\":\"db down\"}",
    ));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "{\"error\":\"db down\"}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(d.call(&r.call_id())["state"], "failed");
}

#[test]
fn an_unreachable_upstream_gets_result_110() {
    // A port that was bound and released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::start(&xip_config(&format!("http://127.0.0.1:{port}/c2c"), ""));
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 502);
    let f = r.form();
    assert_eq!(f["Result"], "110");
    assert_eq!(f["CallID"], r.call_id());
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "failed");
    assert_eq!(call["result"]["code"], "110");
    assert!(
        call["error"].as_str().unwrap().contains("unreachable"),
        "{call}"
    );
}

#[test]
fn an_https_upstream_is_verified_against_the_trust_store() {
    let up = Upstream::start_tls(Behaviour::Reply(200, "text/plain", "QUEUED"));
    let ca = test_ca();
    let d = Daemon::start_env(
        &xip_config(&up.url(), ""),
        &[("SSL_CERT_FILE", ca.as_path())],
    );
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!((r.status, r.text().as_str()), (200, "QUEUED"));
    assert_eq!(up.requests().len(), 1);
    assert_eq!(d.call(&r.call_id())["state"], "handed_off");

    // Without the CA the certificate is refused: Result 110, and why is recorded.
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!((r.status, r.form()["Result"].as_str()), (502, "110"));
    let call = d.call(&r.call_id());
    assert!(
        call["error"].as_str().unwrap().contains("certificate"),
        "{call}"
    );
    assert_eq!(
        up.requests().len(),
        1,
        "nothing passed the refused handshake"
    );
}

#[test]
fn a_slow_upstream_gets_result_111_within_the_timeout() {
    let up = Upstream::start(Behaviour::Hang);
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let t = std::time::Instant::now();
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 504);
    assert_eq!(r.form()["Result"], "111");
    // timeout = "500ms" in the config; generous bound for a loaded machine.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(up.requests().len(), 1);
    assert_eq!(d.call(&r.call_id())["state"], "failed");
}

#[test]
fn an_unknown_partner_is_refused_locally_and_recorded() {
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", "OK"));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let r = d.get(&format!(
        "/request/call.php?{}",
        xip_query(
            "999999",
            REQUESTOR,
            FULFILLMENT,
            &auth(SECRET, "999999", REQUESTOR, FULFILLMENT)
        )
    ));
    assert_eq!(r.status, 403);
    assert_eq!(r.form()["Result"], "101");
    assert!(
        up.requests().is_empty(),
        "an unknown partner reached the upstream"
    );
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "rejected");
    assert_eq!(call["partner_id"], "999999");
    assert!(call["upstream_request"].is_null());
}

#[test]
fn malformed_input_gets_its_code_places_no_call_and_leaves_a_row() {
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", "OK"));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let ok_auth = auth(SECRET, PARTNER, REQUESTOR, FULFILLMENT);
    let cases = [
        (format!("PartnerID={PARTNER}&Requestor=%2B16045551234&Fulfillment={FULFILLMENT}&Auth={ok_auth}"), 400, "103"),
        (format!("PartnerID={PARTNER}&Requestor=1604abc1234&Fulfillment={FULFILLMENT}&Auth={ok_auth}"), 400, "103"),
        (format!("PartnerID={PARTNER}&Requestor={REQUESTOR}&Fulfillment=123&Auth={ok_auth}"), 400, "103"),
        (format!("PartnerID={PARTNER}&Requestor={REQUESTOR}&Auth={ok_auth}"), 400, "102"),
        (format!("Requestor={REQUESTOR}&Fulfillment={FULFILLMENT}&Auth={ok_auth}"), 400, "102"),
        (format!("PartnerID={PARTNER}&Requestor={REQUESTOR}&Requestor=15550000000&Fulfillment={FULFILLMENT}&Auth={ok_auth}"), 400, "104"),
        (format!("PartnerID={PARTNER}&Requestor=%FF%FE&Fulfillment={FULFILLMENT}&Auth={ok_auth}"), 400, "103"),
    ];
    for (q, status, code) in &cases {
        let r = d.get(&format!("/request/call.php?{q}"));
        assert_eq!(r.status, *status, "{q}: {}", r.text());
        assert_eq!(&r.form()["Result"], code, "{q}");
        let call = d.call(&r.call_id());
        assert_eq!(call["state"], "rejected", "{q}");
        assert_eq!(call["received"]["query"], q.as_str());
    }
    assert!(
        up.requests().is_empty(),
        "malformed input reached the upstream"
    );
}

#[test]
fn limits_are_answered_not_hung() {
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", "OK"));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    // A body over max_body_bytes (64 KiB by default): 413 with a row.
    let big = format!("{}&pad={}", demo_query(), "x".repeat(70_000));
    let r = d.post_form("/request/call.php", &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.form()["Result"], "107");
    assert_eq!(d.call(&r.call_id())["state"], "rejected");
    // Headers over max_header_bytes: 431 from the HTTP layer.
    let raw = format!(
        "GET /request/call.php HTTP/1.1\r\nHost: c2cd\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "y".repeat(40_000)
    );
    assert_eq!(request(d.addr, &raw).status, 431);
    // A body that is not a form.
    let raw = "POST /request/call.php HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let r = request(d.addr, raw);
    assert_eq!(r.status, 415);
    assert_eq!(r.form()["Result"], "106");
    // Another method.
    let r = request(
        d.addr,
        "DELETE /request/call.php HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    assert_eq!(r.form()["Result"], "105");
    // Garbage that is not HTTP at all: a 400 from the HTTP layer, and the daemon lives on.
    let r = request_bytes(d.addr, b"\x00\x01\x02 nonsense\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(d.get("/healthz").status, 200);
    assert!(up.requests().is_empty());
}

#[test]
fn the_simulator_plays_every_outcome() {
    let mut d = Daemon::start(&sim_config(""));
    // (A, B, call state, last event, A leg, B leg, CDR cause)
    let cases = [
        (
            REQUESTOR,
            FULFILLMENT,
            "completed",
            "a_ended_normal",
            "hung_up",
            Some("hung_up"),
            16,
        ),
        (
            "15550001234",
            FULFILLMENT,
            "failed",
            "a_ended_busy",
            "busy",
            None,
            17,
        ),
        (
            REQUESTOR,
            "15550011234",
            "failed",
            "b_ended_no_answer",
            "hung_up",
            Some("no_answer"),
            19,
        ),
        (
            REQUESTOR,
            "15550021234",
            "failed",
            "b_ended_failed",
            "hung_up",
            Some("failed"),
            34,
        ),
    ];
    for (a, b, state, last, a_leg, b_leg, cause) in cases {
        let r = d.get(&format!(
            "/request/call.php?{}",
            xip_query(PARTNER, a, b, &auth(SECRET, PARTNER, a, b))
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        let f = r.form();
        assert_eq!(f["Result"], "0");
        let id = r.call_id();
        assert_eq!(f["CallID"], id);
        d.wait_log(&format!("call {id}: {last} -> {state}"));
        let call = d.call(&id);
        assert_eq!(call["state"], state);
        let events = event_kinds(&call);
        assert_eq!(events.last(), Some(&last), "{events:?}");
        assert_eq!(events[..3], ["originating", "accepted", "a_ringing"]);
        let legs = call["legs"].as_array().unwrap();
        assert_eq!(legs[0]["side"], "a");
        assert_eq!(legs[0]["state"], a_leg, "{call}");
        assert_eq!(legs[0]["number"], format!("+{a}").as_str());
        assert_eq!(
            legs.get(1).map(|l| l["state"].as_str().unwrap()),
            b_leg,
            "{call}"
        );
        assert_eq!(call["cdr"]["state"], state);
        assert_eq!(call["cdr"]["cause"], cause);
        assert_eq!(call["cdr"]["legs"].as_array().unwrap().len(), legs.len());
        assert_eq!(call["cdr"]["bridged"].is_null(), state != "completed");
        let seqs: Vec<i64> = call["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    }
    // The simulator refuses BadIncomingAuth like a click-to-call server does.
    let r = d.get(&format!(
        "/request/call.php?{}",
        xip_query(PARTNER, REQUESTOR, FULFILLMENT, "bad")
    ));
    assert_eq!(r.status, 403);
    assert_eq!(r.form()["Result"], "100");
}

#[test]
fn the_admin_api_needs_the_token() {
    let d = Daemon::start(&sim_config(""));
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    let id = r.call_id();
    assert_eq!(d.get(&format!("/v1/calls/{id}")).status, 401);
    assert_eq!(
        d.admin_get(&format!("/v1/calls/{id}"), "wrong-token-wrong-token")
            .status,
        401
    );
    assert_eq!(
        d.admin_get("/v1/calls/00000000-0000-0000-0000-000000000000", TOKEN)
            .status,
        404
    );
    let list = d.admin_get("/v1/calls?limit=5", TOKEN);
    assert_eq!(list.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["calls"][0]["id"], id.as_str());
    let p = d.admin_get("/v1/partners", TOKEN);
    let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(v["partners"][0]["id"], PARTNER);
    let m = d.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.text()
            .contains("c2cd_http_responses_total{route=\"xip\",status=\"200\"} 1"),
        "{}",
        m.text()
    );
}

#[test]
fn a_vendor_that_hangs_up_does_not_abandon_the_call() {
    let up = Upstream::start(Behaviour::Slow(300, "QUEUED"));
    let mut d = Daemon::start(&xip_config(&up.url(), ""));
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        format!(
            "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\n\r\n",
            demo_query()
        )
        .as_bytes(),
    )
    .unwrap();
    up.wait_requests(1);
    drop(s); // the vendor gives up while the upstream is still working
    d.wait_log(": HTTP 200");
    let list = d.admin_get("/v1/calls?limit=1", TOKEN);
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["calls"][0]["state"], "handed_off", "{v}");
    assert_eq!(v["calls"][0]["result_status"], 200);
}

#[test]
fn a_disabled_partner_is_refused_and_its_row_shows_nothing_sent() {
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", "OK"));
    let config = xip_config(&up.url(), "")
        .replace("name = \"Vendor\"", "name = \"Vendor\"\nenabled = false");
    let d = Daemon::start(&config);
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 403);
    assert_eq!(r.form()["Result"], "101");
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "rejected");
    assert!(
        call["provider"].is_null()
            && call["upstream_request"].is_null()
            && call["auth_ok"].is_null(),
        "{call}"
    );
    assert!(up.requests().is_empty());
}

#[test]
fn an_oversized_upstream_answer_gets_result_112_and_a_missing_content_type_stays_missing() {
    let big: &'static str = Box::leak("z".repeat(2000).into_boxed_str());
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", big));
    let d = Daemon::start(&xip_config(&up.url(), "max_response_bytes = 1024"));
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 502);
    assert_eq!(r.form()["Result"], "112");
    assert_eq!(d.call(&r.call_id())["state"], "failed");

    let up = Upstream::start(Behaviour::NoContentType("RAW"));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let r = d.get(&format!("/request/call.php?{}", demo_query()));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "RAW");
    assert_eq!(r.header("content-type"), None, "{:?}", r.headers);
}

#[test]
fn a_slow_body_gets_408_and_a_row() {
    let d = Daemon::start(
        &sim_config("").replace("[server]", "[server]\nbody_read_timeout = \"300ms\""),
    );
    let q = demo_query();
    let raw = format!(
        "POST /request/call.php HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        q.len() + 50,
        q
    );
    let r = request(d.addr, &raw);
    assert_eq!(r.status, 408);
    assert_eq!(r.form()["Result"], "108");
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "rejected");
    assert_eq!(call["received"]["method"], "POST");
}

#[test]
fn without_a_token_the_admin_api_is_off() {
    let d = Daemon::start(&sim_config("").replace(&format!("token = \"{TOKEN}\""), ""));
    let r = d.admin_get("/v1/calls", TOKEN);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("admin_disabled"), "{}", r.text());
    // The bearer scheme is case-insensitive when a token is set.
    let d = Daemon::start(&sim_config(""));
    let r = request(
        d.addr,
        &format!("GET /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_call_whose_provider_goes_silent_is_reconciled_as_lost() {
    // Time limit 1 s, ring timeout 1 s and no grace: the deadline is three
    // seconds after the request (A and B may each ring a second).
    // The clocked logic itself is unit-tested with an injected clock (reconcile.rs);
    // here the daemon's wiring is awaited through its log line.
    let config = sim_config("silent = [\"1555003*\"]")
        .replace("provider = \"sim\"", "provider = \"sim\"\ntime_limit = 1")
        .replace(
            "[[partner]]",
            "[calls]\ngrace = \"0s\"\nring_timeout = \"1s\"\nreconcile_every = \"100ms\"\n\n[[partner]]",
        );
    let mut d = Daemon::start(&config);
    let b = "15550031234";
    let r = d.get(&format!(
        "/request/call.php?{}",
        xip_query(PARTNER, REQUESTOR, b, &auth(SECRET, PARTNER, REQUESTOR, b))
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.call_id();
    d.wait_log(&format!("call {id}: lost"));
    let call = d.call(&id);
    assert_eq!(call["state"], "lost");
    let legs = call["legs"].as_array().unwrap();
    assert_eq!(
        (legs[0]["state"].as_str(), legs[0]["cause"].as_i64()),
        (Some("hung_up"), Some(102))
    );
    assert_eq!(
        (legs[1]["state"].as_str(), legs[1]["cause"].as_i64()),
        (Some("cancelled"), Some(102))
    );
    assert_eq!(call["cdr"]["state"], "lost");
    assert_eq!(call["cdr"]["cause"], 102);
    assert_eq!(
        call["events"].as_array().unwrap().last().unwrap()["kind"],
        "lost"
    );
}

#[test]
fn hanging_up_a_ringing_call_stops_the_provider_and_fails_the_call() {
    // A rings for a minute: long enough to hang up while it rings.
    let mut d = Daemon::start(&sim_config("").replace("ring = \"0s\"", "ring = \"60s\""));
    let id = d
        .get(&format!("/request/call.php?{}", demo_query()))
        .call_id();
    d.wait_log(&format!("call {id}: a_ringing -> dialing_a"));
    let hang = |d: &Daemon| {
        request(
            d.addr,
            &format!(
                "POST /v1/calls/{id}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    let r = hang(&d);
    assert_eq!(r.status, 200, "{}", r.text());
    let call: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(call["state"], "failed");
    assert_eq!(
        call["events"].as_array().unwrap().last().unwrap()["kind"],
        "cancelled"
    );
    let legs = call["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 1);
    assert_eq!(
        (legs[0]["state"].as_str(), legs[0]["cause"].as_i64()),
        (Some("cancelled"), Some(16))
    );
    assert_eq!(call["cdr"]["state"], "failed");
    // A second hang-up finds the call ended; an unknown call is not found.
    assert_eq!(hang(&d).status, 409);
    let r = request(
        d.addr,
        &format!("POST /v1/calls/00000000-0000-7000-8000-000000000000/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        d.get(&format!("/v1/calls/{id}/hangup")).status,
        401,
        "the admin token is needed"
    );
}

#[test]
fn the_time_limit_ends_a_bridged_call() {
    // The simulator would talk for an hour; the partner's TimeLimit of 1 s ends it.
    let config = sim_config("")
        .replace("talk = \"0s\"", "talk = \"1h\"")
        .replace("provider = \"sim\"", "provider = \"sim\"\ntime_limit = 1");
    let mut d = Daemon::start(&config);
    let id = d
        .get(&format!("/request/call.php?{}", demo_query()))
        .call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let call = d.call(&id);
    assert_eq!(call["upstream_request"]["params"]["TimeLimit"], "1");
    assert_eq!(call["cdr"]["state"], "completed");
    assert_eq!(call["cdr"]["cause"], 16);
    // Bridged for the 1 s limit, rounded up to whole seconds: 1, or 2 when the
    // write that ends it lands a few milliseconds past the second.
    let billable = call["cdr"]["billable_s"].as_i64().unwrap();
    assert!((1..=2).contains(&billable), "billable {billable} s");
    assert!(
        call["cdr"]["duration_ms"].as_i64().unwrap() < 10_000,
        "{}",
        call["cdr"]
    );
    let legs = call["legs"].as_array().unwrap();
    assert!(legs.iter().all(|l| l["state"] == "hung_up"), "{legs:?}");
}
