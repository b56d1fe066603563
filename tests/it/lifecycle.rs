//! The daemon's life: the embedded default, durability across kill -9, reload on
//! SIGHUP, drain on SIGTERM, the connection limit, and the CLI over the database.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::common::*;

#[test]
fn with_no_config_it_runs_the_demo_default_and_the_readme_example_works() {
    if std::path::Path::new("/etc/c2cd/c2cd.toml").exists() {
        return; // this machine has a real install; the embedded default is not used
    }
    // The demo default listens on 127.0.0.1:8080; --listen moves it to a free port.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("running on the embedded demo default"),
        "{first}"
    );
    assert!(
        first.contains("--config FILE") && first.contains("c2cd.db"),
        "{first}"
    );
    let addr = loop {
        let line = lines.next().expect("no listening line").unwrap();
        if let Some(a) = line.split("listening on http://").nth(1) {
            break a.trim().parse::<std::net::SocketAddr>().unwrap();
        }
    };
    // The README's curl example, verbatim but for the port.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let url = readme
        .lines()
        .find_map(|l| {
            l.strip_prefix("curl -i '")
                .and_then(|r| r.strip_suffix('\''))
        })
        .expect("a curl -i example in README.md");
    let path = url.strip_prefix("http://127.0.0.1:8080").unwrap();
    let r = request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n"),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.form()["Result"], "0");
    assert!(dir.path().join("c2cd.db").exists());
}

#[test]
fn acknowledged_calls_survive_kill_9() {
    let d = Daemon::start(&sim_config(""));
    let q = demo_query();
    let ids: Vec<String> = (0..40)
        .map(|_| {
            let r = d.get(&format!("/request/call.php?{q}"));
            assert_eq!(r.status, 200);
            r.call_id()
        })
        .collect();
    let config = d.config.clone();
    let dir = d.kill9();
    let db = dir.path().join("c2cd.db");
    // Every acknowledged call is in the database, read by the CLI.
    for id in &ids {
        let out = c2cd_ok([
            OsStr::new("calls"),
            "show".as_ref(),
            id.as_ref(),
            "--database".as_ref(),
            db.as_os_str(),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["result"]["status"], 200);
    }
    // And the daemon starts again on the same database.
    let d = Daemon::start_in(dir, config);
    assert_eq!(d.call(&ids[0])["id"], ids[0].as_str());
    let out = Command::new(BIN)
        .args(["calls", "list", "--limit", "100", "--json", "--database"])
        .arg(d.db())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 40);
}

#[test]
fn sighup_reloads_partners_and_refuses_a_bad_config() {
    let mut d = Daemon::start(&sim_config(""));
    let q = |p: &str, s: &str| {
        xip_query(
            p,
            REQUESTOR,
            FULFILLMENT,
            &auth(s, p, REQUESTOR, FULFILLMENT),
        )
    };
    assert_eq!(
        d.get(&format!("/request/call.php?{}", q("555", "new-secret")))
            .status,
        403
    );

    // A new partner appears on reload.
    let added = sim_config("").replace(
        "[[provider]]",
        "[[partner]]\nid = \"555\"\nsecret = \"new-secret\"\nprovider = \"sim\"\n\n[[provider]]",
    );
    write_config(d.dir.path(), &added);
    d.signal("-HUP");
    d.wait_log("config reloaded");
    assert_eq!(
        d.get(&format!("/request/call.php?{}", q("555", "new-secret")))
            .status,
        200
    );

    // A bad config is refused and the running one stays.
    write_config(d.dir.path(), "[server]\nlisten = 5\n");
    d.signal("-HUP");
    let line = d.wait_log("reload refused");
    assert!(line.contains(":2: server.listen:"), "{line}");
    assert_eq!(
        d.get(&format!("/request/call.php?{}", q("555", "new-secret")))
            .status,
        200
    );

    // A setting that needs a restart is named in the log.
    write_config(
        d.dir.path(),
        &added.replace("[server]", "[server]\nheader_read_timeout = \"3s\""),
    );
    d.signal("-HUP");
    d.wait_log("reload: server.header_read_timeout changed; that takes effect at the next restart");
    d.wait_log("config reloaded");

    // A removed partner is disabled in the database, not deleted.
    write_config(d.dir.path(), &sim_config(""));
    d.signal("-HUP");
    d.wait_log("config reloaded");
    let r = d.get(&format!("/request/call.php?{}", q("555", "new-secret")));
    assert_eq!(r.status, 403);
    let p = d.admin_get("/v1/partners", TOKEN);
    let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
    let gone = v["partners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "555")
        .unwrap()
        .clone();
    assert_eq!(gone["enabled"], false);
    assert_eq!(gone["calls"], 4);
}

#[test]
fn sigterm_drains_and_exits_0() {
    let d = Daemon::start(&sim_config(""));
    assert_eq!(d.get("/healthz").status, 200);
    let (status, _dir, log) = d.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("SIGTERM: draining connections and stopping"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn connections_over_the_limit_get_503() {
    let d = Daemon::start(&sim_config("").replace("[server]", "[server]\nmax_connections = 2"));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        // An answered request on a kept-alive connection proves the slot is taken.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: c2cd\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    let r = d.get("/healthz");
    assert_eq!(r.status, 503, "{}", r.text());
    drop(held);
    let deadline = std::time::Instant::now() + WAIT;
    // The slots come back once the held connections close.
    loop {
        if d.get("/healthz").status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slots never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_slow_request_head_is_cut_off() {
    let d = Daemon::start(
        &sim_config("").replace("[server]", "[server]\nheader_read_timeout = \"300ms\""),
    );
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: c2cd\r\n")
        .unwrap();
    // The head is never finished: the daemon closes the connection (read returns
    // EOF or a reset) instead of holding it.
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let up = Upstream::start(Behaviour::Hang);
    let mut d = Daemon::start(
        &xip_config(&up.url(), "").replace("timeout = \"500ms\"", "timeout = \"2s\""),
    );
    let q = demo_query();
    let addr = d.addr;
    let pending = std::thread::spawn(move || {
        request(
            addr,
            &format!(
                "GET /request/call.php?{q} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n"
            ),
        )
    });
    // The request is in flight once the upstream has it.
    up.wait_requests(1);
    d.signal("-TERM");
    d.wait_log("SIGTERM: draining");
    let r = pending.join().unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    let (status, _dir, log) = d.stop_wait();
    assert_eq!(status.code(), Some(0), "{log}");
    // Secrets never reach the log, even at debug level.
    for secret in [SECRET, "upstream-secret", TOKEN] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn logs_go_to_syslog_when_asked() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let config = sim_config("").replace(
        "level = \"debug\"",
        &format!(
            "level = \"info\"\ntarget = \"syslog\"\nsyslog_socket = \"{}\"",
            sock_path.display()
        ),
    );
    let path = write_config(dir.path(), &config);
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    let port = loop {
        let n = sock.recv(&mut buf).expect("no syslog message in time");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        messages.push(m.clone());
        if let Some(rest) = m.split("listening on http://").nth(1) {
            break rest
                .trim()
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<u16>()
                .unwrap();
        }
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let q = demo_query();
    let r = request(
        addr,
        &format!("GET /request/call.php?{q} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
    let id = r.call_id();
    loop {
        let n = sock.recv(&mut buf).expect("the call was not logged");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        messages.push(m.clone());
        if m.contains(&id) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // RFC 3164 with facility daemon: <30> is daemon.info.
    let pid = child.id();
    for m in &messages {
        assert!(m.starts_with('<'), "{m}");
        assert!(m.contains(&format!("c2cd[{pid}]:")), "{m}");
        assert!(!m.contains(SECRET) && !m.contains(TOKEN), "{m}");
    }
    assert!(
        messages.iter().any(|m| m.starts_with("<30>")),
        "{messages:?}"
    );
}

#[test]
fn kill_9_under_concurrent_load_loses_no_acknowledged_request() {
    let up = Upstream::start(Behaviour::Reply(200, "text/plain", "QUEUED"));
    let d = Daemon::start(&xip_config(&up.url(), ""));
    let addr = d.addr;
    let raw = format!(
        "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
        demo_query()
    );
    let (acks, acked) = std::sync::mpsc::channel::<String>();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let acks = acks.clone();
            let raw = raw.clone();
            std::thread::spawn(move || {
                // Bounded: at most 500 requests per worker; stops at the first failure.
                for _ in 0..500 {
                    match try_request(addr, raw.as_bytes()) {
                        Some(r) if r.status == 200 => {
                            if acks.send(r.call_id()).is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    drop(acks);
    // Kill once 100 requests have been acknowledged, with the others in flight.
    let mut ids: Vec<String> = (0..100)
        .map(|_| acked.recv_timeout(WAIT).unwrap())
        .collect();
    let dir = d.kill9();
    for w in workers {
        w.join().unwrap();
    }
    ids.extend(acked.try_iter());

    let db = rusqlite::Connection::open(dir.path().join("c2cd.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut stmt = db
        .prepare("SELECT state, result_status FROM calls WHERE id = ?1")
        .unwrap();
    for id in &ids {
        let (state, status): (String, Option<i64>) = stmt
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap_or_else(|e| panic!("{id} lost: {e}"));
        assert_eq!(state, "handed_off", "{id}");
        assert_eq!(status, Some(200), "{id}");
    }
    // No call reached the upstream without a row.
    let rows: i64 = db
        .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
        .unwrap();
    assert!(
        rows as usize >= up.requests().len(),
        "{rows} rows, {} upstream requests",
        up.requests().len()
    );
}

#[test]
fn backup_copies_a_running_database_and_keeps_the_newest() {
    let d = Daemon::start(&sim_config(""));
    let q = demo_query();
    let id = d.get(&format!("/request/call.php?{q}")).call_id();
    let copy = d.dir.path().join("copy.db");
    c2cd_ok([
        OsStr::new("backup"),
        "--database".as_ref(),
        d.db().as_os_str(),
        copy.as_os_str(),
    ]);
    // The copy has the call.
    c2cd_ok([
        OsStr::new("calls"),
        "show".as_ref(),
        id.as_ref(),
        "--database".as_ref(),
        copy.as_os_str(),
    ]);

    let dir = d.dir.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    // Three copies a second apart would make the test slow; names differ by
    // second, so older copies are made by hand with older names.
    for old in ["c2cd-20200101T000000Z.db", "c2cd-20200102T000000Z.db"] {
        std::fs::copy(&copy, dir.join(old)).unwrap();
    }
    c2cd_ok([
        OsStr::new("backup"),
        "--keep".as_ref(),
        "2".as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
        "--database".as_ref(),
        d.db().as_os_str(),
    ]);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0], "c2cd-20200102T000000Z.db");
    assert!(left[1] > left[0]);
}

#[test]
fn man_pages_render() {
    for page in ["c2cd.8", "c2cd.toml.5"] {
        let out = Command::new(BIN).args(["man", page]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.lines().take(5).any(|l| l.starts_with(".TH ")),
            "{page}"
        );
        assert!(text.contains(".SH SEE ALSO"), "{page}");
    }
    let out = Command::new(BIN).args(["man", "nope.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// The capability sets of a process, from /proc.
fn capabilities(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_running_daemon_holds_no_capability() {
    // The tests may run as root, with every capability: the daemon must drop them.
    let d = Daemon::start(&sim_config(""));
    for (set, value) in capabilities(d.child.id()) {
        if ["CapEff", "CapPrm", "CapAmb", "CapInh"].contains(&set.as_str()) {
            assert_eq!(value, "0000000000000000", "{set}");
        }
    }
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let path = write_config(dir.path(), &sim_config(""));
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("no notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    // Pets every 100 ms (half of WATCHDOG_USEC) while the writer commits.
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", child.id()))
        .status()
        .unwrap();
    assert!(ok.success());
    loop {
        let m = next();
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1");
    }
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}
