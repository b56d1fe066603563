//! Routes: a partner's providers tried in order, failing over past one that is
//! down, and a circuit breaker that keeps calls away from it, then probes it.

use crate::common::*;

fn config(up: &str) -> String {
    base_config(&format!(
        r#"
[calls]
breaker_failures = 2
breaker_cooldown = "500ms"

[[partner]]
id = "{PARTNER}"
secret = "{SECRET}"
provider = ["up", "sim"]

[[provider]]
name = "up"
kind = "xip"
url = "{up}"
secret = "upstream-secret"
timeout = "500ms"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
"#
    ))
}

fn kinds(call: &serde_json::Value) -> Vec<String> {
    call["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_failing_provider_is_passed_over_then_kept_away_then_probed() {
    // The upstream fails twice (503), then works.
    let up = Upstream::start(Behaviour::FailFirst(2));
    let d = Daemon::start(&config(&up.url()));
    let call = |d: &Daemon| {
        let r = d.get(&format!("/request/call.php?{}", demo_query()));
        assert_eq!(r.status, 200, "{}", r.text());
        d.call(&r.call_id())
    };

    // Twice: the upstream fails, the simulator takes the call.
    for n in 1..=2 {
        let c = call(&d);
        assert_eq!(c["provider"], "sim");
        assert_eq!(
            &kinds(&c)[..3],
            ["originating", "failover", "accepted"],
            "{c}"
        );
        assert!(c["events"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"));
        assert_eq!(up.requests().len(), n);
    }
    // The breaker is open: the upstream is not asked at all.
    let c = call(&d);
    assert_eq!(
        (c["provider"].as_str(), kinds(&c)[1].as_str()),
        (Some("sim"), "accepted")
    );
    assert_eq!(up.requests().len(), 2);
    let providers: serde_json::Value =
        serde_json::from_slice(&d.admin_get("/v1/providers", TOKEN).body).unwrap();
    assert_eq!(providers["providers"][0]["name"], "up");
    assert_eq!(providers["providers"][0]["breaker"], "open");
    assert_eq!(providers["providers"][0]["failures"], 2);
    let cli = c2cd_ok([
        "providers",
        "--config",
        d.config.to_str().unwrap(),
        "--listen",
        &d.addr.to_string(),
    ]);
    let up_line = cli
        .lines()
        .find(|l| l.starts_with("up "))
        .unwrap_or_else(|| panic!("{cli}"));
    assert!(
        up_line.contains("open") && up_line.contains("HTTP 503"),
        "{cli}"
    );
    let metrics = d.get("/metrics").text();
    assert!(
        metrics.contains("c2cd_provider_breaker_open{provider=\"up\"} 1"),
        "{metrics}"
    );

    // After the cooldown (the breaker shows half open) one call probes the
    // upstream, which now answers.
    d.wait_for_json("/v1/providers", |v| {
        v["providers"][0]["breaker"] == "half_open"
    });
    let c = call(&d);
    assert_eq!(
        (c["provider"].as_str(), c["state"].as_str()),
        (Some("up"), Some("handed_off"))
    );
    assert_eq!(up.requests().len(), 3);
    let providers: serde_json::Value =
        serde_json::from_slice(&d.admin_get("/v1/providers", TOKEN).body).unwrap();
    assert_eq!(providers["providers"][0]["breaker"], "closed");
}
