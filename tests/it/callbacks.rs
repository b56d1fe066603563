//! Callbacks: the durable outbox delivered to a real receiver on loopback.

use crate::common::*;

const CB_SECRET: &str = "callback-secret-0123456789";

/// The demo partner on the instant simulator, its callbacks to `url` (host
/// 127.0.0.1 allowed), retried quickly.
fn config(url: &str, extra_calls: &str) -> String {
    sim_config("")
        .replace(
            "provider = \"sim\"",
            &format!(
                "provider = \"sim\"\ncallback_url = \"{url}\"\ncallback_hosts = [\"127.0.0.1\"]\ncallback_secrets = [\"{CB_SECRET}\"]"
            ),
        )
        .replace("[[partner]]", &format!("[callbacks]\nbackoff = \"20ms\"\nmax_backoff = \"100ms\"\n{extra_calls}\n[[partner]]"))
}

fn body(r: &Received) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap()
}

fn signed_ok(r: &Received) -> bool {
    use hmac::Mac;
    let sig = r.header("c2c-signature").unwrap_or_default();
    let t = sig
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("t="))
        .unwrap_or_default();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(CB_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.body).as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sig.split(',').any(|p| p == format!("v1={want}"))
}

#[test]
fn every_event_arrives_once_in_order_after_the_receiver_recovers() {
    // The receiver fails its first three requests (all for the call's first event,
    // which holds back the others: order per call).
    let rx = Upstream::start(Behaviour::FailFirst(3));
    let d = Daemon::start(&config(&rx.url(), ""));
    let q = demo_query();
    let id = d.get(&format!("/request/call.php?{q}")).call_id();
    let kinds = [
        "originating",
        "accepted",
        "a_ringing",
        "a_answered",
        "b_ringing",
        "b_answered",
        "bridged",
        "a_ended_normal",
    ];
    rx.wait_requests(3 + kinds.len());
    let got = rx.requests();
    assert_eq!(got.len(), 3 + kinds.len(), "no duplicate deliveries");
    for r in &got[..3] {
        assert_eq!(
            body(r)["seq"],
            1,
            "the first event is retried before any other"
        );
    }
    let delivered: Vec<serde_json::Value> = got[3..].iter().map(body).collect();
    for (n, (b, kind)) in delivered.iter().zip(kinds).enumerate() {
        assert_eq!(b["seq"], n as i64 + 1);
        assert_eq!(b["event"], kind);
        assert_eq!(b["call_id"], id.as_str());
        assert_eq!(b["partner_id"], PARTNER);
    }
    assert_eq!(delivered.last().unwrap()["state"], "completed");
    assert_eq!(delivered.last().unwrap()["cause"], 16);
    let mut ids: Vec<&str> = delivered
        .iter()
        .map(|b| b["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), kinds.len(), "one event id per event");
    for r in &got {
        assert!(
            signed_ok(r),
            "bad signature: {:?}",
            r.header("c2c-signature")
        );
        assert_eq!(r.header("c2c-event-id"), body(r)["event_id"].as_str());
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }

    // The outbox shows each callback and every attempt. The last delivery is
    // recorded just after the receiver answers: wait for it in the log.
    let mut d = d;
    for _ in 0..8 {
        // One log line per delivered callback, each written once it is recorded.
        d.wait_log(&format!("for call {id}: delivered"));
    }
    let v: serde_json::Value = serde_json::from_slice(
        &d.admin_get(&format!("/v1/calls/{id}/callbacks"), TOKEN)
            .body,
    )
    .unwrap();
    let list = v["callbacks"].as_array().unwrap();
    assert_eq!(list.len(), kinds.len());
    assert_eq!(list[0]["attempts"], 4);
    let log = list[0]["attempts_log"].as_array().unwrap();
    assert_eq!(
        log.iter()
            .map(|a| a["status"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [503, 503, 503, 200]
    );
}

#[test]
fn a_host_no_longer_allowed_gets_nothing_and_the_refusal_is_recorded() {
    // The receiver never answers; attempts time out and are retried until the
    // operator takes the host off the partner's list.
    let rx = Upstream::start(Behaviour::Hang);
    let mut d = Daemon::start(&config(&rx.url(), "timeout = \"200ms\""));
    let q = demo_query();
    let id = d.get(&format!("/request/call.php?{q}")).call_id();
    rx.wait_requests(1);
    let moved = config("http://localhost:9/cb", "timeout = \"200ms\"")
        .replace("[\"127.0.0.1\"]", "[\"localhost\"]");
    write_config(d.dir.path(), &moved);
    d.signal("-HUP");
    d.wait_log("config reloaded");
    d.wait_log(&format!("for call {id}: given up after"));
    let v: serde_json::Value = serde_json::from_slice(
        &d.admin_get(&format!("/v1/calls/{id}/callbacks"), TOKEN)
            .body,
    )
    .unwrap();
    let first = &v["callbacks"][0];
    assert_eq!(first["state"], "dead");
    assert!(
        first["last_error"]
            .as_str()
            .unwrap()
            .contains("not in the partner's callback_hosts"),
        "{first}"
    );
}

#[test]
fn a_daemon_killed_mid_delivery_delivers_after_restart() {
    // The first delivery hangs; the daemon is killed while it waits.
    let rx = Upstream::start(Behaviour::HangFirst(1));
    let d = Daemon::start(&config(&rx.url(), ""));
    let q = demo_query();
    let id = d.get(&format!("/request/call.php?{q}")).call_id();
    rx.wait_requests(1);
    let config_path = d.config.clone();
    let dir = d.kill9();
    // After the restart the outbox is delivered from the start: the interrupted
    // event again (at least once), then the rest, in order.
    let _d = Daemon::start_in(dir, config_path);
    rx.wait_requests(1 + 8);
    let got = rx.requests();
    let seqs: Vec<i64> = got
        .iter()
        .map(|r| body(r)["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 1, 2, 3, 4, 5, 6, 7, 8], "call {id}");
    assert_eq!(
        body(&got[0])["event_id"],
        body(&got[1])["event_id"],
        "a redelivery carries the same event id"
    );
}

#[test]
fn the_cli_lists_shows_and_replays_callbacks() {
    let rx = Upstream::start(Behaviour::FailFirst(0));
    let mut d = Daemon::start(&config(&rx.url(), ""));
    let q = demo_query();
    let id = d.get(&format!("/request/call.php?{q}")).call_id();
    rx.wait_requests(8);
    for _ in 0..8 {
        // One log line per delivered callback, each written once it is recorded.
        d.wait_log(&format!("for call {id}: delivered"));
    }
    let db = d.db();
    let cli = |args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        all.extend([std::ffi::OsStr::new("--database"), db.as_os_str()]);
        c2cd_ok(all)
    };
    let list: serde_json::Value =
        serde_json::from_str(&cli(&["callbacks", "list", "--json", "--call", &id])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 8);
    assert!(list
        .iter()
        .all(|c| c["state"] == "delivered" && c["attempts"] == 1));
    let first = list.last().unwrap()["id"].as_i64().unwrap().to_string();
    let shown: serde_json::Value =
        serde_json::from_str(&cli(&["callbacks", "show", &first])).unwrap();
    assert_eq!(shown["seq"], 1);
    assert_eq!(shown["attempts_log"][0]["status"], 200);
    assert!(cli(&["callbacks", "replay", &first]).contains("queued to be sent again"));
    rx.wait_requests(9);
    let got = rx.requests();
    assert_eq!(got[8].header("c2c-event-id"), got[0].header("c2c-event-id"));
}

/// [`config`] with the callbacks going to `url` on `localhost`, the name the test
/// receivers' certificate is for.
fn localhost_config(url: &str, extra_calls: &str) -> String {
    config(url, extra_calls).replace("[\"127.0.0.1\"]", "[\"localhost\"]")
}

#[test]
fn https_callbacks_trust_the_system_store_and_arrive_signed() {
    let rx = Upstream::start_tls(Behaviour::FailFirst(0));
    assert!(rx.url().starts_with("https://localhost:"), "{}", rx.url());
    // The test CA comes in the way an operator's private CA would: SSL_CERT_FILE.
    let ca = test_ca();
    let mut d = Daemon::start_env(
        &localhost_config(&rx.url(), ""),
        &[("SSL_CERT_FILE", ca.as_path())],
    );
    assert!(
        d.log_text()
            .contains("https: 1 trusted root certificates from SSL_CERT_FILE="),
        "{}",
        d.log_text()
    );
    let id = d
        .get(&format!("/request/call.php?{}", demo_query()))
        .call_id();
    rx.wait_requests(8);
    for _ in 0..8 {
        // One log line per delivered callback, each written once it is recorded.
        d.wait_log(&format!("for call {id}: delivered"));
    }
    let got = rx.requests();
    let seqs: Vec<i64> = got
        .iter()
        .map(|r| body(r)["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    for r in &got {
        assert_eq!(body(r)["call_id"], id.as_str());
        assert!(
            signed_ok(r),
            "bad signature: {:?}",
            r.header("c2c-signature")
        );
        assert_eq!(r.header("c2c-event-id"), body(r)["event_id"].as_str());
        assert_eq!(r.path, "/c2c/call");
    }
    let v: serde_json::Value = serde_json::from_slice(
        &d.admin_get(&format!("/v1/calls/{id}/callbacks"), TOKEN)
            .body,
    )
    .unwrap();
    let list = v["callbacks"].as_array().unwrap();
    assert_eq!(list.len(), 8);
    assert!(
        list.iter()
            .all(|c| c["state"] == "delivered" && c["attempts"] == 1),
        "{v}"
    );
}

#[test]
fn an_https_receiver_the_trust_store_does_not_vouch_for_gets_nothing() {
    // The daemon runs without the test CA: the receiver's certificate is signed
    // by no root it trusts.
    let rx = Upstream::start_tls(Behaviour::FailFirst(0));
    let mut d = Daemon::start(&localhost_config(&rx.url(), "attempts = 2"));
    let id = d
        .get(&format!("/request/call.php?{}", demo_query()))
        .call_id();
    d.wait_log(&format!("for call {id}: given up after 2 attempts"));
    let v: serde_json::Value = serde_json::from_slice(
        &d.admin_get(&format!("/v1/calls/{id}/callbacks"), TOKEN)
            .body,
    )
    .unwrap();
    let first = &v["callbacks"][0];
    assert_eq!(first["state"], "dead", "{first}");
    assert_eq!(first["attempts"], 2, "{first}");
    for a in first["attempts_log"].as_array().unwrap() {
        assert!(a["status"].is_null(), "{a}");
        assert!(a["error"].as_str().unwrap().contains("certificate"), "{a}");
    }
    assert!(
        rx.requests().is_empty(),
        "nothing may pass an untrusted TLS handshake"
    );
}

#[test]
fn with_no_trusted_root_c2cd_warns_once_and_http_callbacks_still_arrive() {
    let empty = tempfile::tempdir().unwrap();
    let bundle = empty.path().join("none.pem");
    std::fs::write(&bundle, "").unwrap();
    let rx = Upstream::start(Behaviour::FailFirst(0));
    let mut d = Daemon::start_env(
        &config(&rx.url(), ""),
        &[("SSL_CERT_FILE", &bundle), ("SSL_CERT_DIR", empty.path())],
    );
    let id = d
        .get(&format!("/request/call.php?{}", demo_query()))
        .call_id();
    rx.wait_requests(8);
    for _ in 0..8 {
        d.wait_log(&format!("for call {id}: delivered"));
    }
    // The store is read at start only: a reload does not warn again.
    d.signal("-HUP");
    d.wait_log("config reloaded");
    let log = d.log_text();
    assert_eq!(
        log.matches("no trusted root certificate found").count(),
        1,
        "{log}"
    );
}
