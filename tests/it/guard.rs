//! Guard rails, through the real daemon: replays, Idempotency-Key, number
//! checks, the blocklist, rate and concurrency limits, each answered in the
//! dialect's own code, recorded with its rule, and dialling nothing.

use std::net::SocketAddr;

use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

const USER: &str = "crm";
const PASSWORD: &str = "crm-password-0123456789";
const XIP_SECRET: &str = "guard-xip-secret";

/// Valid numbers (libphonenumber agrees), distinct per test step.
const A: &str = "+16045551234";
const B: &str = "+14155550123";

/// Partner `crm` on xip, native and spokn; `few` with max_calls 2; `agents`
/// with one call per B; `slow` with max_rate 2/m. Calls stay bridged a minute.
fn config() -> String {
    guarded_config(
        r#"dedupe_window = "30s"
number_limits = ["3/15m"]
check_numbers = true"#,
        &format!(
            r#"
[[partner]]
id = "crm"
dialects = ["xip", "native", "spokn"]
secret = "{XIP_SECRET}"
username = "{USER}"
password = "{PASSWORD}"
provider = "sim"

[[partner]]
id = "few"
dialects = ["native"]
username = "few"
password = "{PASSWORD}"
provider = "sim"
max_calls = 2
dedupe_window = "0s"

[[partner]]
id = "agents"
dialects = ["native"]
username = "agents"
password = "{PASSWORD}"
provider = "sim"
max_calls_per_b = 1

[[partner]]
id = "slow"
dialects = ["native"]
username = "slow"
password = "{PASSWORD}"
provider = "sim"
max_rate = "2/m"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "60s"
"#
        ),
    )
}

fn basic(user: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"))
}

/// `POST /v1/calls` as `user`, with extra header lines.
fn native(d: SocketAddr, user: &str, a: &str, b: &str, headers: &str) -> Response {
    native_body(d, user, &body(a, b), headers)
}

fn native_body(d: SocketAddr, user: &str, body: &Value, headers: &str) -> Response {
    let body = body.to_string();
    request(
        d,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            basic(user),
            body.len()
        ),
    )
}

fn body(a: &str, b: &str) -> Value {
    json!({ "a": { "participants": [{ "number": a }] }, "b": { "participants": [{ "number": b }] } })
}

fn xip(d: &Daemon, a: &str, b: &str) -> Response {
    let (a, b) = (&a[1..], &b[1..]);
    d.get(&format!(
        "/request/call.php?{}",
        xip_query("crm", a, b, &auth(XIP_SECRET, "crm", a, b))
    ))
}

fn spokn(d: &Daemon, a: &str, b: &str) -> Response {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("aparty", a)
        .append_pair("bparty", b)
        .finish();
    request(
        d.addr,
        &format!(
            "POST /c2c/1.0/call HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            basic(USER),
            form.len()
        ),
    )
}

fn spokn_code(r: &Response) -> String {
    let t = r.text();
    let start = t.find("<code>").map(|i| i + 6).unwrap_or(0);
    let end = t.find("</code>").unwrap_or(start);
    t[start..end].to_string()
}

fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// The request id c2cd gave the refused request (the problem's `call_id`).
fn problem_call(r: &Response) -> String {
    json_of(r)["call_id"].as_str().unwrap().to_string()
}

/// The ids of the requests of `dialect` recorded with guard `rule`.
fn stopped(d: &Daemon, rule: &str) -> Vec<Value> {
    let db = rusqlite::Connection::open(d.db()).unwrap();
    let mut s = db
        .prepare("SELECT id FROM calls WHERE guard = ?1 ORDER BY id")
        .unwrap();
    let ids: Vec<String> = s
        .query_map([rule], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids.iter().map(|id| d.call(id)).collect()
}

#[test]
fn a_repeat_within_the_window_is_a_replay_in_every_dialect_and_dials_nothing() {
    let d = Daemon::start(&config());
    let first = native(d.addr, "crm", A, B, "");
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.call_id();
    // The replay tells the earlier call's state now: once it is bridged (a
    // loaded machine may take a while to get there).
    d.wait_for_json(&format!("/v1/calls/{id}"), |v| v["state"] == "bridged");

    let again = native(d.addr, "crm", A, B, "");
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.call_id(), id);
    assert_eq!(again.header("c2c-replay"), Some("true"));
    let v = json_of(&again);
    assert_eq!(
        (v["id"].as_str(), v["replay"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(v["state"], "bridged");

    let x = xip(&d, A, B);
    assert_eq!(x.status, 200, "{}", x.text());
    assert_eq!(x.form()["Result"], "0");
    assert_eq!(x.form()["CallID"], id);
    assert_eq!(x.header("c2c-replay"), Some("true"));

    let s = spokn(&d, A, B);
    assert_eq!(
        (s.status, spokn_code(&s)),
        (200, "200".into()),
        "{}",
        s.text()
    );
    assert_eq!(s.call_id(), id);

    // Three replays, each a row of its own that names the call and dialled nothing.
    let replays = stopped(&d, "duplicate");
    assert_eq!(replays.len(), 3);
    for r in &replays {
        assert_eq!(r["replay_of"], id.as_str());
        assert_eq!(r["state"], "rejected");
        assert_eq!(r["provider"], Value::Null);
        assert_eq!(r["legs"].as_array().map(Vec::len), Some(0), "{r}");
        let detail = r["events"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("dedupe_window 30s"), "{detail}");
    }
    // Other numbers are another call.
    assert_eq!(native(d.addr, "crm", B, A, "").status, 201);

    // A double click sent at once: one call, the others its replays.
    let (a, b) = ("+16045558201", "+14155558201");
    let rs = at_once(6, |_| native(d.addr, "crm", a, b, ""));
    assert_eq!(statuses(&rs), [200, 200, 200, 200, 200, 201]);
    let placed = rs.iter().find(|r| r.status == 201).unwrap().call_id();
    assert!(rs.iter().all(|r| r.call_id() == placed));
}

#[test]
fn impossible_and_blocked_numbers_are_refused_in_each_dialects_code() {
    let d = Daemon::start(&config());
    let bad = "+15550001234";
    let n = native(d.addr, "crm", A, bad, "");
    assert_eq!(n.status, 422, "{}", n.text());
    assert_eq!(json_of(&n)["errors"][0]["field"], "b.participants");
    let x = xip(&d, bad, B);
    assert_eq!(
        (x.status, x.form()["Result"].as_str()),
        (400, "103"),
        "{}",
        x.text()
    );
    assert_eq!(spokn_code(&spokn(&d, A, bad)), "104");
    assert_eq!(stopped(&d, "invalid_b").len(), 2);
    assert_eq!(stopped(&d, "invalid_a").len(), 1);

    // An operator blocks a prefix for B while the daemon runs.
    let db = d.db();
    let db = db.to_str().unwrap();
    c2cd_ok([
        "block",
        "add",
        "+1415555*",
        "--side",
        "b",
        "--reason",
        "dnc",
        "--database",
        db,
    ]);
    let n = native(d.addr, "crm", A, B, "");
    assert_eq!(n.status, 403, "{}", n.text());
    assert_eq!(json_of(&n)["code"], "blocked");
    assert!(
        !n.text().contains("dnc"),
        "the entry's reason stays in the record"
    );
    let x = xip(&d, A, B);
    assert_eq!(
        (x.status, x.form()["Result"].as_str()),
        (403, "130"),
        "{}",
        x.text()
    );
    assert_eq!(spokn_code(&spokn(&d, A, B)), "107");
    // Only for B: the same number as A is called.
    assert_eq!(native(d.addr, "crm", B, A, "").status, 201);

    let rows = stopped(&d, "blocked_b");
    assert_eq!(rows.len(), 3);
    let detail = rows[0]["events"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("+1415555*") && detail.contains("dnc"),
        "{detail}"
    );
    let listed: Value =
        serde_json::from_str(&c2cd_ok(["block", "list", "--json", "--database", db])).unwrap();
    assert_eq!(listed["entries"][0]["hits"], 3, "{listed}");
}

/// Sends `n` requests at once from threads; their answers.
fn at_once(n: usize, send: impl Fn(usize) -> Response + Sync) -> Vec<Response> {
    std::thread::scope(|s| {
        let send = &send;
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || send(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn statuses(rs: &[Response]) -> Vec<u16> {
    let mut v: Vec<u16> = rs.iter().map(|r| r.status).collect();
    v.sort_unstable();
    v
}

#[test]
fn limits_hold_under_concurrent_requests() {
    let d = Daemon::start(&config());
    // max_calls = 2: of eight at once, two are placed.
    let rs = at_once(8, |i| {
        native(d.addr, "few", &format!("+1604555{:04}", 2000 + i), B, "")
    });
    assert_eq!(statuses(&rs), [201, 201, 503, 503, 503, 503, 503, 503]);
    let busy = rs.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(json_of(busy)["code"], "partner_busy");
    assert!(busy.header("retry-after").is_some());

    // One call per B: of six callers of one agent, one gets through.
    let agent = "+14155550188";
    let rs = at_once(6, |i| {
        native(
            d.addr,
            "agents",
            &format!("+1604555{:04}", 3000 + i),
            agent,
            "",
        )
    });
    assert_eq!(statuses(&rs), [201, 409, 409, 409, 409, 409]);
    let r = rs.iter().find(|r| r.status == 409).unwrap();
    assert_eq!(json_of(r)["code"], "b_busy");

    // Three calls per A number in 15 minutes, across partners and B numbers.
    let victim = "+16045559999";
    let rs = at_once(6, |i| {
        let user = ["crm", "agents"][i % 2];
        native(
            d.addr,
            user,
            victim,
            &format!("+1415555{:04}", 4000 + i),
            "",
        )
    });
    assert_eq!(statuses(&rs), [201, 201, 201, 429, 429, 429]);
    let r = rs.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(json_of(r)["code"], "number_limit");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((890..=900).contains(&wait), "{wait}");
    let x = xip(&d, victim, "+14155554999");
    assert_eq!(
        (x.status, x.form()["Result"].as_str()),
        (429, "131"),
        "{}",
        x.text()
    );
    // A stranger's XIP request (bad Auth) passes no guard rail and counts in
    // none: it goes upstream to fail as BadIncomingAuth.
    let (a, b) = (&victim[1..], "14155554997");
    let stranger = d.get(&format!(
        "/request/call.php?{}",
        xip_query("crm", a, b, "0123")
    ));
    assert_eq!(stranger.form()["Result"], "100", "{}", stranger.text());
    assert_eq!(spokn_code(&spokn(&d, victim, "+14155554998")), "106");

    // max_rate 2/m: of six at once, the burst of two, then 429 rate_limited.
    let rs = at_once(6, |i| {
        native(d.addr, "slow", &format!("+1604555{:04}", 5000 + i), B, "")
    });
    assert_eq!(statuses(&rs), [201, 201, 429, 429, 429, 429]);
    let r = rs.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(json_of(r)["code"], "rate_limited");

    // Each refusal is recorded with its rule, and was placed nowhere.
    for (rule, n) in [
        ("partner_busy", 6),
        ("agent_busy", 5),
        ("number_limit", 5),
        ("partner_rate", 4),
    ] {
        let rows = stopped(&d, rule);
        assert_eq!(rows.len(), n, "{rule}");
        assert!(rows
            .iter()
            .all(|r| r["provider"].is_null() && r["state"] == "rejected"));
        let metric = format!("c2cd_guard_stops_total{{rule=\"{rule}\"}} {n}");
        assert!(d.get("/metrics").text().contains(&metric), "{metric}");
    }
}

#[test]
fn a_slot_is_free_again_once_its_call_ends() {
    let d = Daemon::start(&config());
    let first = native(d.addr, "few", "+16045556001", B, "");
    let second = native(d.addr, "few", "+16045556002", B, "");
    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(native(d.addr, "few", "+16045556003", B, "").status, 503);
    // The partner hangs its first call up: the slot is free.
    let r = request(
        d.addr,
        &format!(
            "POST /v1/calls/{}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            first.call_id(),
            basic("few")
        ),
    );
    assert!(r.status < 300, "{} {}", r.status, r.text());
    d.wait_for_json(&format!("/v1/calls/{}", first.call_id()), |v| {
        v["state"] == "completed" || v["state"] == "failed"
    });
    assert_eq!(native(d.addr, "few", "+16045556003", B, "").status, 201);
}

#[test]
fn a_providers_channels_are_a_limit_and_a_full_one_passes_calls_on() {
    let d = Daemon::start(&guarded_config(
        "",
        &format!(
            r#"
[[partner]]
id = "solo"
dialects = ["native"]
username = "solo"
password = "{PASSWORD}"
provider = "small"

[[partner]]
id = "routed"
dialects = ["native"]
username = "routed"
password = "{PASSWORD}"
provider = ["small", "big"]

[[provider]]
name = "small"
kind = "sim"
ring = "0s"
talk = "60s"
max_channels = 1

[[provider]]
name = "big"
kind = "sim"
ring = "0s"
talk = "60s"
"#
        ),
    ));
    let rs = at_once(4, |i| {
        native(d.addr, "solo", &format!("+1604555{:04}", 7000 + i), B, "")
    });
    assert_eq!(statuses(&rs), [201, 503, 503, 503]);
    let full = rs.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(json_of(full)["code"], "no_channel");
    let told = full.text();
    assert!(
        !told.contains("small"),
        "provider names stay in the record: {told}"
    );
    let detail = stopped(&d, "provider_busy")[0]["events"][0]["detail"].clone();
    assert!(
        detail
            .as_str()
            .unwrap()
            .contains("all 1 channels of provider small"),
        "{detail}"
    );
    // With another provider in its route, a call goes there instead.
    let r = native(d.addr, "routed", "+16045557100", B, "");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(d.call(&r.call_id())["provider"], "big");
    let providers = d.admin_get("/v1/providers", TOKEN);
    assert!(
        providers.text().contains("\"in_flight\": 1"),
        "{}",
        providers.text()
    );
    assert_eq!(stopped(&d, "provider_busy").len(), 3);
}

#[test]
fn caller_ids_are_held_to_the_partners_list_and_masks_keep_the_real_one() {
    let d = Daemon::start(&guarded_config(
        "",
        &format!(
            r#"
[[partner]]
id = "listed"
dialects = ["native"]
username = "listed"
password = "{PASSWORD}"
provider = "sim"
allowed_caller_ids = ["+1800555*"]

[[partner]]
id = "masked"
dialects = ["native", "xip"]
secret = "{XIP_SECRET}"
username = "masked"
password = "{PASSWORD}"
provider = "sim"
mask_b = "+18005550100"

[[provider]]
name = "sim"
kind = "sim"
"#
        ),
    ));
    let shown = |cid: &str| {
        let mut v = body(A, B);
        v["a"]["caller_id"] = cid.into();
        native_body(d.addr, "listed", &v, "")
    };
    let r = shown("+13125550000");
    assert_eq!(r.status, 422, "{}", r.text());
    let p = json_of(&r);
    assert_eq!(p["errors"][0]["field"], "a.caller_id");
    assert_eq!(stopped(&d, "caller_id_a").len(), 1);
    assert_eq!(shown("+18005550199").status, 201);
    // The parties' own numbers are always theirs to show (B sees A by default).
    assert_eq!(shown(B).status, 201);
    assert_eq!(native(d.addr, "listed", "+16045558001", B, "").status, 201);

    // B is shown the partner's main number; who really called stays on record.
    let r = native(d.addr, "masked", "+16045558002", B, "");
    assert_eq!(r.status, 201, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["b"]["caller_id"], "+18005550100");
    assert_eq!(call["b"]["caller_id_real"], "+16045558002");
    assert_eq!(call["a"]["caller_id_real"], Value::Null);
    assert_eq!(call["plan"]["b"]["caller_id"], "+18005550100");
    let r = d.get(&format!(
        "/request/call.php?{}",
        xip_query(
            "masked",
            "16045558003",
            "14155550123",
            &auth(XIP_SECRET, "masked", "16045558003", "14155550123")
        )
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["b"]["caller_id"], "+18005550100");
    assert_eq!(
        call["b"]["caller_id_real"], "6045558003",
        "XIP shows the last 10 digits"
    );
}

#[test]
fn an_idempotency_key_replays_its_first_answer_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config());
    let d = Daemon::start_in(dir, path.clone());
    let key = "Idempotency-Key: order-4711\r\n";
    let first = native(d.addr, "crm", A, B, key);
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.call_id();

    let again = native(d.addr, "crm", A, B, key);
    assert_eq!((again.status, again.call_id()), (201, id.clone()));
    assert_eq!(again.body, first.body, "the first answer, byte for byte");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let other = native(d.addr, "crm", A, "+14155550124", key);
    assert_eq!(other.status, 409, "{}", other.text());
    assert_eq!(json_of(&other)["code"], "idempotency_key_reused");
    let bad = native(
        d.addr,
        "crm",
        A,
        B,
        &format!("Idempotency-Key: {}\r\n", "k".repeat(256)),
    );
    assert_eq!(bad.status, 422, "{}", bad.text());

    // Keys are kept in the database: after kill -9 the key still replays.
    let dir = d.kill9();
    let d = Daemon::start_in(dir, path);
    let later = native(d.addr, "crm", A, B, key);
    assert_eq!((later.status, later.call_id()), (201, id.clone()));
    assert_eq!(later.body, first.body);
    // Keys are per partner.
    assert_eq!(native(d.addr, "few", A, "+14155550125", key).status, 201);

    let replays = stopped(&d, "idempotency_replay");
    assert_eq!(replays.len(), 2);
    assert!(replays.iter().all(|r| r["replay_of"] == id.as_str()));
    assert_eq!(
        stopped(&d, "idempotency_key_reused")[0]["id"],
        problem_call(&other)
    );
}

#[test]
fn a_key_is_in_use_while_its_first_request_is_being_placed() {
    // The click-to-call server takes its time: the first request is still
    // being placed when its retry comes.
    let up = Upstream::start(Behaviour::Slow(1500, "Result=0&Message=OK"));
    let d = Daemon::start(&guarded_config(
        "",
        &format!(
            r#"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "{PASSWORD}"
provider = "up"

[[provider]]
name = "up"
kind = "xip"
url = "{url}"
secret = "upstream-secret"
timeout = "5s"
"#,
            url = up.url()
        ),
    ));
    let key = "Idempotency-Key: slow-1\r\n";
    std::thread::scope(|s| {
        let first = s.spawn(|| native(d.addr, "crm", A, B, key));
        up.wait_requests(1);
        let retry = native(d.addr, "crm", A, B, key);
        assert_eq!(retry.status, 409, "{}", retry.text());
        assert_eq!(json_of(&retry)["code"], "idempotency_key_in_use");
        assert_eq!(retry.header("retry-after"), Some("1"));
        let first = first.join().unwrap();
        assert!(first.status < 300, "{}", first.text());
        // Once answered, the key replays that answer.
        let later = native(d.addr, "crm", A, B, key);
        assert_eq!(
            (later.status, later.call_id()),
            (first.status, first.call_id())
        );
        assert_eq!(later.header("idempotent-replayed"), Some("true"));
    });
    assert_eq!(up.requests().len(), 1, "the retries dialled nothing");
    assert_eq!(stopped(&d, "idempotency_key_in_use").len(), 1);
}

#[test]
fn a_partner_is_closed_on_its_holidays_and_says_when_it_opens() {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let tomorrow = today.tomorrow().unwrap();
    let d = Daemon::start(&guarded_config(
        "",
        &format!(
            r#"
[[partner]]
id = "office"
dialects = ["native"]
username = "office"
password = "{PASSWORD}"
provider = "sim"
hours = ["mon-sun 00:00-24:00"]
holidays = ["{today}", "{tomorrow}"]
timezone = "UTC"

[[provider]]
name = "sim"
kind = "sim"
"#
        ),
    ));
    let r = native(d.addr, "office", A, B, "");
    assert_eq!(r.status, 403, "{}", r.text());
    let p = json_of(&r);
    assert_eq!(p["code"], "outside_hours");
    let opens = today.tomorrow().unwrap().tomorrow().unwrap();
    assert!(
        p["title"]
            .as_str()
            .unwrap()
            .contains(&format!("opens {opens}T00:00:00+00:00")),
        "{p}"
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((86_400..=2 * 86_400).contains(&wait), "{wait}");
    let rows = stopped(&d, "outside_hours");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["provider"], Value::Null);
}

#[test]
fn a_call_outside_hours_is_deferred_survives_a_restart_and_is_placed_at_the_opening() {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let tomorrow = today.tomorrow().unwrap();
    let opens = tomorrow.tomorrow().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = guarded_config(
        "",
        &format!(
            r#"
[[partner]]
id = "later"
dialects = ["native", "xip"]
secret = "{XIP_SECRET}"
username = "later"
password = "{PASSWORD}"
provider = "sim"
hours = ["mon-sun 00:00-24:00"]
holidays = ["{today}", "{tomorrow}"]
timezone = "UTC"
outside_hours = "defer"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
"#
        ),
    );
    let path = write_config(dir.path(), &text);
    let d = Daemon::start_in(dir, path.clone());
    let r = native(d.addr, "later", A, B, "");
    assert_eq!(r.status, 202, "{}", r.text());
    let v = json_of(&r);
    assert_eq!(v["state"], "scheduled");
    assert_eq!(v["start_at"], format!("{opens}T00:00:00.000Z"));
    assert!(r.header("retry-after").is_none());
    let first = r.call_id();
    let hung = native(d.addr, "later", "+16045559001", B, "");
    assert_eq!(hung.status, 202);
    let x = d.get(&format!(
        "/request/call.php?{}",
        xip_query(
            "later",
            "16045559002",
            "14155550123",
            &auth(XIP_SECRET, "later", "16045559002", "14155550123")
        )
    ));
    assert_eq!(
        (x.status, x.form()["Result"].as_str()),
        (200, "0"),
        "{}",
        x.text()
    );
    assert!(x.form()["Message"].starts_with("Deferred"), "{}", x.text());

    // The partner changes its mind about one: hung up before it starts.
    let r = request(
        d.addr,
        &format!(
            "POST /v1/calls/{}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            hung.call_id(),
            basic("later")
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = d.admin_get("/v1/calls?state=scheduled", TOKEN);
    let calls = json_of(&listed)["calls"].as_array().unwrap().len();
    assert_eq!(calls, 2, "{}", listed.text());

    // Deferred calls are rows: kill -9 keeps them. The opening comes while
    // c2cd is down (start_at moved to the past, the holidays over): it places
    // the call when back.
    let dir = d.kill9();
    let db = rusqlite::Connection::open(dir.path().join("c2cd.db")).unwrap();
    db.execute("UPDATE calls SET start_at = 0 WHERE id = ?1", [&first])
        .unwrap();
    drop(db);
    let open = text.replace(&format!("holidays = [\"{today}\", \"{tomorrow}\"]"), "");
    assert_ne!(open, text);
    let path = write_config(dir.path(), &open);
    let d = Daemon::start_in(dir, path);
    let done = d.wait_for_json(&format!("/v1/calls/{first}"), |v| v["state"] == "completed");
    let kinds = event_kinds(&done);
    assert_eq!(
        &kinds[..3],
        ["deferred", "originating", "accepted"],
        "{kinds:?}"
    );
    assert_eq!(done["provider"], "sim");
    assert_eq!(d.call(&hung.call_id())["state"], "failed");
    let still = d.admin_get("/v1/calls?state=scheduled", TOKEN);
    assert_eq!(
        json_of(&still)["calls"].as_array().unwrap().len(),
        1,
        "the XIP one waits on"
    );
}

#[test]
fn a_call_to_a_busy_agent_waits_in_the_queue_for_its_line_or_gives_up() {
    let d = Daemon::start(&guarded_config(
        "",
        &format!(
            r#"
[[partner]]
id = "queue"
dialects = ["native"]
username = "queue"
password = "{PASSWORD}"
provider = "short"
max_calls_per_b = 1
b_queue = "30s"

[[partner]]
id = "impatient"
dialects = ["native"]
username = "impatient"
password = "{PASSWORD}"
provider = "long"
max_calls_per_b = 1
b_queue = "1s"

[[provider]]
name = "short"
kind = "sim"
ring = "0s"
talk = "1s"

[[provider]]
name = "long"
kind = "sim"
ring = "0s"
talk = "60s"
"#
        ),
    ));
    let agent = "+14155550177";
    let first = native(d.addr, "queue", "+16045558101", agent, "");
    assert_eq!(first.status, 201, "{}", first.text());
    let queued = native(d.addr, "queue", "+16045558102", agent, "");
    assert_eq!(queued.status, 202, "{}", queued.text());
    let v = json_of(&queued);
    assert_eq!(v["state"], "scheduled");
    assert!(v["queued_until"].is_string(), "{v}");
    // Once the first call ends, the agent's line is free: the queued call rings.
    let done = d.wait_for_json(&format!("/v1/calls/{}", queued.call_id()), |v| {
        v["state"] == "completed"
    });
    let ended = d.call(&first.call_id());
    assert_eq!(ended["state"], "completed");
    let started = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "originating");
    let first_end = ended["events"].as_array().unwrap().last().unwrap()["at"].clone();
    assert!(
        started.unwrap()["at"].as_str() >= first_end.as_str(),
        "the queued call starts after the first ends: {done} {ended}"
    );
    assert_eq!(done["guard"], "agent_busy");

    let busy = "+14155550178";
    assert_eq!(
        native(d.addr, "impatient", "+16045558103", busy, "").status,
        201
    );
    let waits = native(d.addr, "impatient", "+16045558104", busy, "");
    assert_eq!(waits.status, 202, "{}", waits.text());
    let gave_up = d.wait_for_json(&format!("/v1/calls/{}", waits.call_id()), |v| {
        v["state"] == "failed"
    });
    let last = gave_up["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["detail"].as_str().unwrap().contains("gave up waiting")
            && last["detail"]
                .as_str()
                .unwrap()
                .contains("max_calls_per_b is 1"),
        "{last}"
    );
    assert_eq!(gave_up["provider"], Value::Null, "nothing was dialled");
}

#[test]
fn bad_guard_settings_are_config_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = guarded_config(
        "number_limits = [\"3 per hour\"]\ndedupe_window = \"2d\"",
        "[[partner]]\nid = \"p\"\nsecret = \"s\"\nprovider = \"sim\"\nmax_rate = \"0/s\"\nburst = 0\nhours = [\"mon-fri 9-18\"]\n\n[[partner]]\nid = \"q\"\nsecret = \"s\"\nprovider = \"sim\"\nholidays = [\"12/25\"]\n\n[[partner]]\nid = \"r\"\nsecret = \"s\"\nprovider = \"sim\"\nhours = [\"mon 09:00-17:00\"]\ntimezone = \"Mars/Olympus\"\nb_queue = \"5s\"\n\n[[provider]]\nname = \"sim\"\nkind = \"sim\"\n",
    );
    let path = write_config(dir.path(), &text);
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    for needle in [
        ":15: guard.number_limits: \"3 per hour\" is not COUNT/PERIOD",
        ":16: guard.dedupe_window:",
        ":21: partner.max_rate:",
        ":22: partner.burst: must be at least 1",
        ":23: partner.hours: \"mon-fri 9-18\": \"9-18\" is not a time range",
        ":29: partner.holidays: needs hours",
        ":36: partner.timezone: \"Mars/Olympus\" is not a time zone",
        ":37: partner.b_queue: needs max_calls_per_b",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
}

/// A partner closed today and tomorrow (holidays) that defers: `later`,
/// routed to an XIP click-to-call server that records what it is sent, and
/// `one`, with one call in progress at most, on a simulator whose calls last
/// two seconds. `holidays` is false once the opening has come.
fn deferring_config(up: &str, holidays: bool) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let closed = match holidays {
        true => format!(
            "holidays = [\"{today}\", \"{}\"]",
            today.tomorrow().unwrap()
        ),
        false => String::new(),
    };
    guarded_config(
        "dedupe_window = \"1h\"\nnumber_limits = [\"2/15m\"]",
        &format!(
            r#"
[[partner]]
id = "later"
dialects = ["native"]
username = "later"
password = "{PASSWORD}"
provider = "up"
hours = ["mon-sun 00:00-24:00"]
{closed}
timezone = "UTC"
outside_hours = "defer"
max_waiting = 4
max_rate = "5/m"

[[partner]]
id = "one"
dialects = ["native"]
username = "one"
password = "{PASSWORD}"
provider = "sim"
hours = ["mon-sun 00:00-24:00"]
{closed}
timezone = "UTC"
outside_hours = "defer"
max_calls = 1

[[provider]]
name = "up"
kind = "xip"
url = "{up}"
secret = "upstream-secret"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "2s"
"#
        ),
    )
}

#[test]
fn a_deferred_call_meets_the_guard_rails_when_it_comes_and_again_when_it_starts() {
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", "Result=0&Message=OK"));
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &deferring_config(&up.url(), true));
    let d = Daemon::start_in(dir, path);
    let db = d.db();
    c2cd_ok([
        "block",
        "add",
        "+14155550999",
        "--side",
        "b",
        "--database",
        db.to_str().unwrap(),
    ]);

    // Taken for the opening: a call, and one with an Idempotency-Key, whose
    // retry replays the 202.
    let first = native(d.addr, "later", A, B, "");
    assert_eq!(first.status, 202, "{}", first.text());
    let keyed = native(
        d.addr,
        "later",
        "+16045557001",
        "+14155557001",
        "Idempotency-Key: k-1\r\n",
    );
    assert_eq!(keyed.status, 202, "{}", keyed.text());
    let again = native(
        d.addr,
        "later",
        "+16045557001",
        "+14155557001",
        "Idempotency-Key: k-1\r\n",
    );
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(again.call_id(), keyed.call_id());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // What is refused for good is refused now, not deferred: a replay, a
    // blocked number, an A number past its limit.
    let replay = native(d.addr, "later", A, B, "");
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(json_of(&replay)["replay"], true);
    assert_eq!(replay.call_id(), first.call_id());
    let blocked = native(d.addr, "later", "+16045557002", "+14155550999", "");
    assert_eq!(blocked.status, 403, "{}", blocked.text());
    assert_eq!(json_of(&blocked)["code"], "blocked");
    let second = native(d.addr, "later", A, "+14155557002", "");
    assert_eq!(second.status, 202, "{}", second.text());
    let third = native(d.addr, "later", A, "+14155557003", "");
    assert_eq!(third.status, 429, "{}", third.text());
    assert_eq!(json_of(&third)["code"], "number_limit");

    // The waiting calls are a bounded queue, and they spend the rate.
    let fourth = native(d.addr, "later", "+16045557004", "+14155557004", "");
    assert_eq!(fourth.status, 202, "{}", fourth.text());
    let full = native(d.addr, "later", "+16045557005", "+14155557005", "");
    assert_eq!(full.status, 503, "{}", full.text());
    assert_eq!(json_of(&full)["code"], "partner_busy");
    assert!(full.text().contains("max_waiting is 4"), "{}", full.text());
    assert_eq!(d.call(&problem_call(&full))["guard"], "partner_busy");

    // Two for the partner with one line.
    let one = native(d.addr, "one", "+16045557011", "+14155557011", "");
    let two = native(d.addr, "one", "+16045557012", "+14155557012", "");
    assert_eq!((one.status, two.status), (202, 202));

    // Overnight the operator blocks one B the queue will call.
    c2cd_ok([
        "block",
        "add",
        "+14155557004",
        "--side",
        "b",
        "--database",
        db.to_str().unwrap(),
    ]);
    assert!(up.requests().is_empty(), "nothing was dialled while closed");

    // The opening comes while c2cd is down.
    let (_, dir, _) = d.stop();
    let conn = rusqlite::Connection::open(dir.path().join("c2cd.db")).unwrap();
    conn.execute(
        "UPDATE calls SET start_at = 0 WHERE state = 'scheduled'",
        [],
    )
    .unwrap();
    drop(conn);
    let path = write_config(dir.path(), &deferring_config(&up.url(), false));
    let d = Daemon::start_in(dir, path);

    // The blocked one fails with its rule, the others go to the server.
    let gone = d.wait_for_json(&format!("/v1/calls/{}", fourth.call_id()), |v| {
        v["state"] == "failed"
    });
    assert_eq!(gone["guard"], "blocked_b");
    assert!(!event_kinds(&gone).contains(&"originating"), "{gone}");
    for c in [&first, &keyed, &second] {
        d.wait_for_json(&format!("/v1/calls/{}", c.call_id()), |v| {
            v["state"] == "handed_off"
        });
    }
    let dialled: Vec<String> = up
        .requests()
        .iter()
        .map(|r| {
            let p = r.params();
            p.iter()
                .find(|(k, _)| k == "DestinationPhone")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert_eq!(dialled.len(), 3, "{dialled:?}");
    assert!(!dialled.contains(&"14155557004".to_string()), "{dialled:?}");

    // One line: the second call starts once the first has ended.
    let ended = d.wait_for_json(&format!("/v1/calls/{}", two.call_id()), |v| {
        v["state"] == "completed"
    });
    let first_call = d.call(&one.call_id());
    assert_eq!(first_call["state"], "completed");
    let started = ended["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "originating")
        .unwrap()["at"]
        .clone();
    let first_end = first_call["events"].as_array().unwrap().last().unwrap()["at"].clone();
    assert!(
        started.as_str() >= first_end.as_str(),
        "{ended} {first_call}"
    );
}

/// A partner on every dialect, routed to `provider`, with `extra` keys.
fn everywhere(id: &str, provider: &str, extra: &str) -> String {
    format!(
        r#"
[[partner]]
id = "{id}"
dialects = ["xip", "native", "spokn", "airtel"]
secret = "{XIP_SECRET}"
username = "{id}"
password = "{PASSWORD}"
customer_id = "CUST-{id}"
call_flow_ids = ["FLOW-{id}"]
callback_hosts = ["127.0.0.1"]
callback_secrets = ["callback-secret-0123456789"]
provider = "{provider}"
{extra}
"#
    )
}

/// One request for partner `user` from A to B (ten Indian digits each, as
/// Airtel writes them), in `dialect`; `cid` is what A is shown where the
/// dialect lets the request say. The answer's HTTP status and the dialect's
/// own code.
fn ask_in(
    d: &Daemon,
    dialect: &str,
    user: &str,
    a: &str,
    b: &str,
    cid: Option<&str>,
) -> (u16, String) {
    match dialect {
        "native" => {
            let mut v = body(&format!("+91{a}"), &format!("+91{b}"));
            if let Some(cid) = cid {
                v["a"]["caller_id"] = cid.into();
            }
            let r = native_body(d.addr, user, &v, "");
            let code = match r.status {
                200..=299 => String::new(),
                _ => json_of(&r)["code"].as_str().unwrap().to_string(),
            };
            (r.status, code)
        }
        "xip" => {
            let (a, b) = (format!("91{a}"), format!("91{b}"));
            let r = d.get(&format!(
                "/request/call.php?{}",
                xip_query(user, &a, &b, &auth(XIP_SECRET, user, &a, &b))
            ));
            let code = r.form().get("Result").cloned();
            (r.status, code.unwrap_or_else(|| r.text()))
        }
        "spokn" => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("aparty", &format!("+91{a}"))
                .append_pair("bparty", &format!("+91{b}"));
            if let Some(cid) = cid {
                form.append_pair("apartycid", cid);
            }
            let form = form.finish();
            let r = request(
                d.addr,
                &format!(
                    "POST /c2c/1.0/call HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
                    basic(user),
                    form.len()
                ),
            );
            (r.status, spokn_code(&r))
        }
        "airtel" => {
            let cid = cid.unwrap_or("8000000001");
            let cb = json!({ "eventType": "ALL", "notifyURL": "http://127.0.0.1:9/cb", "method": "POST", "headers": {} });
            let v = json!({
                "callFlowId": format!("FLOW-{user}"),
                "customerId": format!("CUST-{user}"),
                "callType": "OUTBOUND",
                "callerId": cid,
                "callFlowConfiguration": {
                    "initiateCall_1": {
                        "callerId": cid,
                        "mergingStrategy": "SEQUENTIAL",
                        "participants": [{ "participantAddress": a, "callerId": cid, "participantName": "A", "maxRetries": 0, "maxTime": 0 }],
                        "maxTime": 0,
                        "callBackURLs": [cb]
                    },
                    "addParticipant_1": {
                        "mergingStrategy": "SEQUENTIAL",
                        "maxTime": 0,
                        "participants": [{ "participantAddress": b, "callerId": cid, "participantName": "B", "maxRetries": 0, "maxTime": 0 }]
                    }
                }
            })
            .to_string();
            let r = request(
                d.addr,
                &format!(
                    "POST /v2/execute/workflow HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{v}",
                    basic(user),
                    v.len()
                ),
            );
            let code = match r.status {
                200 => String::new(),
                _ => json_of(&r)["errorCode"].as_str().unwrap_or("").to_string(),
            };
            (r.status, code)
        }
        other => unreachable!("{other}"),
    }
}

#[test]
fn every_rule_is_answered_in_each_dialects_code_and_dials_nothing() {
    const OK_XML: &str = "<?xml version=\"1.0\"?>\n<spokn xmlns=\"http://api.spokn.com/api/c2c.xsd\">\n  <c2c version=\"1.0\">\n    <code>200</code>\n    <desc>Request Successful</desc>\n  </c2c>\n</spokn>\n";
    // A Spokn server that records what it is sent: its calls stay in
    // progress (no callbacks come), so they hold their slots.
    let up = Upstream::start(Behaviour::Reply(200, "application/xml", OK_XML));
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let partners = [
        everywhere("rate", "up", "max_rate = \"1/h\""),
        everywhere("busy", "up", "max_calls = 1"),
        everywhere("agent", "up", "max_calls_per_b = 1"),
        everywhere(
            "closed",
            "up",
            &format!(
                "hours = [\"mon-sun 00:00-24:00\"]\nholidays = [\"{today}\"]\ntimezone = \"UTC\""
            ),
        ),
        everywhere("chan", "tiny", ""),
        everywhere(
            "cids",
            "up",
            "allowed_caller_ids = [\"+18005550100\"]\nenterprise = true",
        ),
    ]
    .concat();
    let text = guarded_config(
        "check_numbers = false\nnumber_limits = [\"1/15m\"]",
        &format!(
            r#"{partners}
[[provider]]
name = "up"
kind = "spokn"
url = "{url}"
username = "acct"
secret = "acct-password"
enterprise = true

[[provider]]
name = "tiny"
kind = "sim"
ring = "0s"
talk = "60s"
max_channels = 1
"#,
            url = up.url()
        ),
    )
    .replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\npublic_url = \"https://c2cd.example\"",
    );
    let d = Daemon::start(&text);
    // Every request has an A number of its own, but where the A number's
    // limit is the point.
    let mut next_a = 9_810_000_000u64;
    let mut a = || {
        next_a += 1;
        next_a.to_string()
    };
    let dialects = ["xip", "spokn", "airtel", "native"];
    let expect = |rule: &str,
                  user: &str,
                  a: &mut dyn FnMut() -> String,
                  b: &str,
                  cid: Option<&str>,
                  want: [(u16, &str); 4]| {
        for (dialect, want) in dialects.iter().zip(want) {
            let got = ask_in(&d, dialect, user, &a(), b, cid);
            assert_eq!((got.0, got.1.as_str()), want, "{rule} in {dialect}");
        }
    };

    // The slots: the first call takes it, then every dialect is refused.
    let first_a = a();
    assert_eq!(
        ask_in(&d, "native", "rate", &first_a, "9820000001", None).0,
        201
    );
    expect(
        "partner_rate",
        "rate",
        &mut a,
        "9820000002",
        None,
        [
            (429, "132"),
            (500, "500"),
            (429, "RATE_LIMIT_EXCEEDED"),
            (429, "rate_limited"),
        ],
    );
    assert_eq!(
        ask_in(&d, "native", "busy", &a(), "9820000003", None).0,
        201
    );
    expect(
        "partner_busy",
        "busy",
        &mut a,
        "9820000004",
        None,
        [
            (503, "133"),
            (500, "500"),
            (503, "CONCURRENT_CALL_LIMIT_EXCEEDED"),
            (503, "partner_busy"),
        ],
    );
    assert_eq!(
        ask_in(&d, "native", "agent", &a(), "9820000005", None).0,
        201
    );
    expect(
        "agent_busy",
        "agent",
        &mut a,
        "9820000005",
        None,
        [
            (409, "134"),
            (200, "107"),
            (409, "TO_PARTICIPANT_BUSY"),
            (409, "b_busy"),
        ],
    );
    assert_eq!(
        ask_in(&d, "native", "chan", &a(), "9820000006", None).0,
        201
    );
    expect(
        "provider_busy",
        "chan",
        &mut a,
        "9820000007",
        None,
        [
            (503, "136"),
            (500, "500"),
            (503, "NO_CHANNEL_AVAILABLE"),
            (503, "no_channel"),
        ],
    );
    expect(
        "outside_hours",
        "closed",
        &mut a,
        "9820000008",
        None,
        [
            (403, "135"),
            (200, "106"),
            (403, "OUTSIDE_BUSINESS_HOURS"),
            (403, "outside_hours"),
        ],
    );
    // The first call's A number had its one call in 15 minutes.
    let mut same_a = || first_a.clone();
    expect(
        "number_limit",
        "agent",
        &mut same_a,
        "9820000009",
        None,
        [
            (429, "131"),
            (200, "106"),
            (429, "FROM_NUMBER_CALL_LIMIT_EXCEEDED"),
            (429, "number_limit"),
        ],
    );
    // XIP's caller IDs are always the parties' own: only the others can ask
    // for another.
    for (dialect, want) in [
        ("spokn", (200, "102")),
        ("airtel", (400, "INVALID_CALLER_ID")),
        ("native", (422, "invalid")),
    ] {
        let got = ask_in(
            &d,
            dialect,
            "cids",
            &a(),
            "9820000010",
            Some("+919999999999"),
        );
        let got = match dialect {
            // Airtel's callerId is ten digits.
            "airtel" => ask_in(&d, dialect, "cids", &a(), "9820000010", Some("9999999999")),
            _ => got,
        };
        assert_eq!((got.0, got.1.as_str()), want, "caller_id in {dialect}");
    }

    // Each refusal is a row with its rule, and only the three calls that
    // took a slot reached the Spokn server.
    for (rule, n) in [
        ("partner_rate", 4),
        ("partner_busy", 4),
        ("agent_busy", 4),
        ("provider_busy", 4),
        ("outside_hours", 4),
        ("number_limit", 4),
    ] {
        let rows = stopped(&d, rule);
        assert_eq!(rows.len(), n, "{rule}");
        assert!(rows.iter().all(|r| r["state"] == "rejected"), "{rule}");
    }
    assert_eq!(up.requests().len(), 3, "{:?}", up.requests());
}
