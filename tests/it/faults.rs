//! Faults of the machine under the daemon: the disk full (SQLITE_FULL). Each
//! gets a bounded, documented answer, and c2cd recovers by itself once the
//! fault is gone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A tmpfs of `size` mounted for the test, unmounted when dropped.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// `None` when this user may not mount (not root): the test cannot run.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            at: at.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_full_disk_gets_the_internal_error_and_c2cd_recovers_when_space_is_freed() {
    let outer = tempfile::tempdir().unwrap();
    let disk = outer.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let Some(_fs) = Tmpfs::mount(&disk, "8m") else {
        // CI runs as root; only a developer without root gets here.
        assert!(!is_root(), "root could not mount a tmpfs");
        eprintln!("faults: skipped, mounting a tmpfs needs root");
        return;
    };
    let text = sim_config("").replace("{DB}", &disk.join("c2cd.db").display().to_string());
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    let mut d = Daemon::start_in(dir, path);
    assert_eq!(
        request(
            d.addr,
            &format!(
                "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
                demo_query()
            )
        )
        .status,
        200
    );

    // Fill the disk with a file the test can take back, then with calls.
    let filler = disk.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let addr = d.addr;
    let xip = || {
        request(
            addr,
            &format!(
                "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
                demo_query()
            ),
        )
    };
    let mut refused = None;
    for _ in 0..2000 {
        let r = xip();
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the disk never filled");
    eprintln!(
        "faults: a full disk is answered HTTP {}: {}",
        r.status,
        r.text().trim()
    );
    // The answer c2cd documents for a database that cannot take the write.
    assert!(
        r.status == 500 || r.status == 503,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(
        matches!(r.form()["Result"].as_str(), "121" | "120"),
        "{}",
        r.text()
    );
    assert_eq!(d.get("/healthz").status, 503, "a full disk is not healthy");
    d.wait_logged("full");

    // Space again: the next requests are taken, with no restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if d.get("/healthz").status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "c2cd did not recover");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = xip();
    assert_eq!(r.status, 200, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_ne!(call["state"], "rejected", "{call}");
    let (status, _dir, _log) = d.stop();
    assert!(status.success(), "{status:?}");
    // Nothing was damaged.
    let conn = rusqlite::Connection::open(disk.join("c2cd.db")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn a_database_another_process_holds_gets_retry_later_and_c2cd_recovers() {
    let d = Daemon::start(&sim_config(""));
    let xip = || {
        request(
            d.addr,
            &format!(
                "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
                demo_query()
            ),
        )
    };
    assert_eq!(xip().status, 200);
    // An operator's sqlite3 takes the write lock and keeps it past c2cd's
    // busy timeout (5 s).
    let other = rusqlite::Connection::open(d.db()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = xip();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.form()["Result"], "120", "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    // The lock is gone: the next request is taken, no restart.
    let r = xip();
    assert_eq!(r.status, 200, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_ne!(call["state"], "rejected", "{call}");
}

/// How many failing requests [`many_failures_leak_no_socket_slot_or_channel`]
/// sends (`C2CD_FAULT_REQUESTS`; RELIABILITY.md has a run of 100,000).
fn fault_requests() -> usize {
    std::env::var("C2CD_FAULT_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn many_failures_leak_no_socket_slot_or_channel() {
    // An upstream whose port refuses: every call fails at once (Result 110),
    // then the breaker answers for it while open.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/c2c", closed.local_addr().unwrap());
    drop(closed);
    let d = Daemon::start(&xip_config(&url, "max_channels = 4"));
    let pid = d.child.id();
    // Warm: the read pool and the runtime have what they keep.
    assert_eq!(d.get("/healthz").status, 200);
    let sockets_before = tcp_sockets(pid);
    let rss_before = rss_kib(pid);
    let n = fault_requests();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let codes = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    let r = request(
                        d.addr,
                        &format!(
                            "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
                            demo_query()
                        ),
                    );
                    let code = r.form().get("Result").cloned().unwrap_or_else(|| r.status.to_string());
                    *codes.lock().unwrap().entry(code).or_default() += 1;
                }
            });
        }
    });
    let codes = codes.into_inner().unwrap();
    // Every one failed with an upstream code, none with the internal error.
    assert!(codes.keys().all(|c| c.starts_with("11")), "{codes:?}");
    // Nothing held: sockets back to the listener's, no channel in flight, no
    // call in progress, memory within a bound.
    let deadline = std::time::Instant::now() + WAIT;
    while tcp_sockets(pid) > sockets_before {
        assert!(
            std::time::Instant::now() < deadline,
            "sockets: {}",
            tcp_sockets(pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let providers: serde_json::Value =
        serde_json::from_slice(&d.admin_get("/v1/providers", TOKEN).body).unwrap();
    assert_eq!(providers["providers"][0]["in_flight"], 0, "{providers}");
    let db = rusqlite::Connection::open(d.db()).unwrap();
    let live: i64 = db
        .query_row(
            "SELECT count(*) FROM calls WHERE state IN ('originating', 'accepted', 'dialing_a', 'a_answered', 'dialing_b', 'bridged')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, 0);
    let rss = rss_kib(pid);
    eprintln!(
        "faults: {n} failing requests ({codes:?}): TCP sockets {} (before {sockets_before}), in flight 0, calls in progress 0, RSS {rss} KiB (before {rss_before} KiB)",
        tcp_sockets(pid)
    );
    assert!(
        rss < rss_before + 32 * 1024,
        "RSS {rss} KiB, {rss_before} before"
    );
    // And the daemon still answers.
    assert_eq!(d.get("/healthz").status, 200);
}
