//! HTTP abuse on the real listener: floods of connections, slowloris,
//! pipelining, conflicting message lengths, declared-huge bodies and invalid
//! UTF-8. The daemon's file descriptors and memory stay bounded, other
//! clients keep being served, and each bad request gets its door's error
//! (and a row, where a door was reached).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::common::*;

/// This process's soft limit of open files.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// The daemon's sockets, with their states, for a failure's message.
fn sockets(pid: u32) -> String {
    let out = std::process::Command::new("ss")
        .args(["-tanp"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `ok` until it holds, or fails with `what` after [`WAIT`].
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn healthz_from(from: &str, d: &Daemon) -> u16 {
    request_from(
        from,
        d.addr,
        "GET /healthz HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
    )
    .status
}

#[test]
fn ten_thousand_connections_from_one_source_leave_others_served_and_fds_bounded() {
    let d = Daemon::start(
        &sim_config("").replace("[server]", "[server]\nmax_connections_per_source = 50"),
    );
    let pid = d.child.id();
    // Warm: the read connections a request opens stay in their pool.
    assert_eq!(healthz_from("127.0.0.2", &d), 200);
    let before = tcp_sockets(pid);
    let rss_before = rss_kib(pid);
    // As many as this process may open, up to 10,000.
    let n = 10_000.min(open_files_limit().saturating_sub(200));
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(d.addr) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connect {} failed: {e}", held.len()),
        }
    }
    // Another client is served all the while.
    assert_eq!(healthz_from("127.0.0.2", &d), 200);
    // The refused ones are closed as soon as their 503 is written.
    eventually(
        &format!("50 connections held (sockets before: {before})"),
        || tcp_sockets(pid) <= before + 50,
    );
    let rss = rss_kib(pid);
    eprintln!(
        "abuse: {n} connections from one source: {} TCP sockets open in c2cd (before: {before}), RSS {rss} KiB (before: {rss_before} KiB)",
        tcp_sockets(pid)
    );
    assert!(
        rss < rss_before + 64 * 1024,
        "RSS {rss} KiB with {n} connections held (before: {rss_before} KiB)"
    );
    let metrics = d.get("/metrics");
    // From 127.0.0.1 itself: refused, as it holds its 50.
    assert_eq!(metrics.status, 503, "{}", metrics.text());
    drop(held);
    eventually(&format!("sockets back to {before}"), || {
        tcp_sockets(pid) <= before
    });
    assert_eq!(healthz_from("127.0.0.1", &d), 200);
    let m = request_from(
        "127.0.0.2",
        d.addr,
        "GET /metrics HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
    );
    let refused: u64 = m
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("c2cd_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(refused as usize >= n - 50, "{refused} refused of {n}");
}

#[test]
fn a_slowloris_is_cut_off_and_does_not_starve_others() {
    let d = Daemon::start(&sim_config("").replace(
        "[server]",
        "[server]\nheader_read_timeout = \"500ms\"\nmax_connections_per_source = 20",
    ));
    let pid = d.child.id();
    assert_eq!(healthz_from("127.0.0.2", &d), 200);
    let before = tcp_sockets(pid);
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        // A head begun and never finished.
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: c2");
        s.set_read_timeout(Some(WAIT)).unwrap();
        slow.push(s);
    }
    assert_eq!(healthz_from("127.0.0.2", &d), 200);
    // Every one ends: cut off at the head's deadline, or refused at once.
    let t = Instant::now();
    for mut s in slow {
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains("200 OK"), "{text}");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let deadline = Instant::now() + WAIT;
    while tcp_sockets(pid) > before {
        assert!(
            Instant::now() < deadline,
            "sockets not back to {before} within {WAIT:?}: {}\n{}",
            tcp_sockets(pid),
            sockets(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(healthz_from("127.0.0.1", &d), 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let d = Daemon::start(&sim_config(""));
    let raw = format!(
        "GET /healthz HTTP/1.1\r\nHost: c2cd\r\n\r\nGET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
        demo_query()
    );
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "404"], "{text}");
    assert!(text.contains("Result=0"), "{text}");
}

#[test]
fn conflicting_message_lengths_are_refused_and_nothing_is_smuggled() {
    let d = Daemon::start(&sim_config(""));
    // Content-Length and Transfer-Encoding both: a proxy in front may frame
    // the body by one and c2cd by the other. Refused, the connection closed,
    // and the request hidden behind it never answered.
    let smuggled = format!(
        "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\n\r\n",
        demo_query()
    );
    let raw = format!(
        "POST /request/call.php HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(!text.contains("Result=0"), "{text}");
    // Two different Content-Lengths: 400 from the HTTP layer.
    let r = request(
        d.addr,
        "POST /request/call.php HTTP/1.1\r\nHost: c2cd\r\nContent-Length: 3\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // A Transfer-Encoding that is not chunked: 400 too.
    let r = request(
        d.addr,
        "POST /request/call.php HTTP/1.1\r\nHost: c2cd\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nabcd",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn a_body_declared_huge_is_refused_at_once_with_a_row() {
    let d = Daemon::start(&sim_config(""));
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // Ten gigabytes announced, a few bytes sent: no waiting for the rest.
    s.write_all(
        b"POST /request/call.php HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000000\r\nConnection: close\r\n\r\nPartnerID=1",
    )
    .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = parse_response(&buf);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.form()["Result"], "107", "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "rejected", "{call}");
}

#[test]
fn invalid_utf8_gets_each_doors_error_and_a_row() {
    let d = Daemon::start(&sim_config(
        r#"
[[partner]]
id = "crm"
dialects = ["native", "spokn"]
username = "crm"
password = "crm-password-0123456789"
provider = "sim"
"#,
    ));
    let basic = format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789")
    );
    let post = |path: &str, auth: &str, ct: &str, body: &[u8]| {
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: c2cd\r\n{auth}Content-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        request_bytes(d.addr, &raw)
    };
    let rejected = |r: &Response| {
        let call = d.call(&r.call_id());
        assert_eq!(call["state"], "rejected", "{call}");
    };

    // XIP: a percent-encoded byte that is no UTF-8, in the query and in a form.
    let r = d.get(&format!(
        "/request/call.php?PartnerID={PARTNER}&Requestor=%FF%FE&Fulfillment={FULFILLMENT}&Auth=x"
    ));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.form()["Result"], "103", "{}", r.text());
    rejected(&r);
    let r = post(
        "/request/call.php",
        "",
        "application/x-www-form-urlencoded",
        b"PartnerID=\xff\xfe&Requestor=1&Fulfillment=2",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    rejected(&r);

    // Native: a JSON body with a byte that is no UTF-8.
    let r = post(
        "/v1/calls",
        &basic,
        "application/json",
        b"{\"a\": \"\xff\"}",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("urn:c2cd:problem:malformed"),
        "{}",
        r.text()
    );
    rejected(&r);

    // Spokn: a form with one.
    let r = post(
        "/c2c/1.0/call",
        &basic,
        "application/x-www-form-urlencoded",
        b"aparty=%FF%FE&bparty=%2B14155550123",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<code>103</code>"), "{}", r.text());
    rejected(&r);

    // A raw byte that is no ASCII in the request target, or in a header: the
    // HTTP layer's 400, or the door's 401.
    let r = request_bytes(
        d.addr,
        b"GET /request/call.php?PartnerID=\xff HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request_bytes(
        d.addr,
        b"POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic \xff\xfe\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    rejected(&r);
    assert_eq!(d.get("/healthz").status, 200);
}
