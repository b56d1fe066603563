//! Crash consistency: load through the XIP, native, Spokn, Airtel, Cloud9 and
//! RoundTrip doors, and native calls placed on a (scripted) Asterisk over AMI,
//! while the daemon is killed with SIGKILL at random moments and restarted on
//! the same database, then: every request that got a success answer is in the
//! database as answered (a RoundTrip post as the sales data of the call it
//! named); no call was originated on the Asterisk twice; no call reached the
//! upstream
//! click-to-call server twice; `PRAGMA integrity_check` is ok; every call
//! cut off mid-flight was reconciled to a final state after the restarts; and
//! every callback due was delivered.
//!
//! `C2CD_CRASH_ROUNDS` sets the number of kills (default 3 here;
//! `bash tests/crash/run.sh` runs 25 and prints the counts). With
//! `C2CD_CRASH_DEFER=1` (as `run.sh` sets it) a seventh door takes XIP
//! requests for a partner closed until the next whole minute at least 20 s
//! away, which defers them to that opening; the kills then go on until 5 s
//! past it, so that daemons die while the deferred calls are being placed,
//! and each deferred call must reach the upstream once. (Hours are whole
//! minutes, so this costs up to 80 s: not in every `cargo test`.)

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::common::*;

const CRM_PASSWORD: &str = "crm-password-0123456789";
const AGENCY_PASSWORD: &str = "agency-password-0123456789";
const CARRIER: &str = "C9CRASH";
const CB_SECRET: &str = "callback-secret-0123456789";

const LATER_SECRET: &str = "later-secret-0123456789";

/// When the deferring partner opens (see the module's doc), if it is on.
fn opening() -> Option<jiff::Zoned> {
    if std::env::var("C2CD_CRASH_DEFER").ok().as_deref() != Some("1") {
        return None;
    }
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let at = (&now + jiff::SignedDuration::from_secs(80))
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .ok()?;
    // Not across midnight: hours run within a day.
    (at.date() == now.date() && at.time() < jiff::civil::time(23, 59, 0, 0)).then_some(at)
}

/// The partner of the deferred door: open from `at` to midnight.
fn later_partner(at: &jiff::Zoned) -> String {
    format!(
        r#"
[[partner]]
id = "later"
secret = "{LATER_SECRET}"
provider = "c2c"
time_limit = 1
hours = ["mon-sun {}-24:00"]
timezone = "UTC"
outside_hours = "defer"
"#,
        at.strftime("%H:%M")
    )
}

fn config(upstream: &str, callbacks: &str, ami: &str) -> String {
    base_config(&format!(
        r#"
[calls]
ring_timeout = "1s"
grace = "1s"
reconcile_every = "100ms"

[callbacks]
backoff = "20ms"
max_backoff = "200ms"

[cloud9]
carrier_ids = ["{CARRIER}"]

[[partner]]
id = "{PARTNER}"
secret = "{SECRET}"
provider = "c2c"
time_limit = 1
callback_url = "{callbacks}"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["{CB_SECRET}"]

[[partner]]
id = "crm"
dialects = ["native", "spokn", "airtel"]
username = "crm"
password = "{CRM_PASSWORD}"
customer_id = "CUST-1"
call_flow_ids = ["FLOW-1"]
provider = "c2c"
time_limit = 1
callback_url = "{callbacks}"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["{CB_SECRET}"]

[[partner]]
id = "agency"
roundtrip = "full"
username = "agency"
password = "{AGENCY_PASSWORD}"

[[partner]]
id = "pbxcrm"
dialects = ["native"]
username = "pbxcrm"
password = "{CRM_PASSWORD}"
provider = "pbx"
time_limit = 1
callback_url = "{callbacks}"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["{CB_SECRET}"]

[[provider]]
name = "pbx"
kind = "ami"
address = "{ami}"
username = "c2c"
secret = "c2c-secret"
channel = "Local/{{number}}@c2c-test/n"
context = "c2c-test"

[[provider]]
name = "c2c"
kind = "xip"
url = "{upstream}"
secret = "upstream-secret-0123456789"
timeout = "2s"
"#
    ))
}

/// The doors the load goes through, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Door {
    Xip,
    Native,
    Spokn,
    Airtel,
    Cloud9,
    /// Sales data by ID for a call answered before (seed 003).
    RoundTrip,
    /// XIP for a partner that defers its calls to its opening.
    Deferred,
    /// Native, placed on the Asterisk over AMI.
    Ami,
}

const DOORS: [Door; 7] = [
    Door::Xip,
    Door::Native,
    Door::Spokn,
    Door::Airtel,
    Door::Cloud9,
    Door::RoundTrip,
    Door::Ami,
];

/// A RoundTrip post of sales data for call `id`, marked with `n`.
fn roundtrip_for(id: &str, n: u64) -> String {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("agency:{AGENCY_PASSWORD}"));
    let body = format!(
        "<Call xmlns=\"http://www.dial800.com/roundtrip/2011-07-15\"><ID>{id}</ID><Disposition>crash-{n}</Disposition></Call>"
    );
    format!(
        "POST /roundtrip HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {basic}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Request `n` through `door`: its A number (the caller's MSISDN for Cloud9,
/// its TRANSACTIONID `n`) is unique, so that the upstream's log tells each
/// call apart.
fn request_for(door: Door, n: u64) -> (String, String) {
    let a = format!("1604{:07}", n);
    let b = FULFILLMENT;
    // Airtel's numbers are 10 digits, in India (`[airtel] country_code`).
    let airtel_a = format!("98{:08}", n % 100_000_000);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("crm:{CRM_PASSWORD}"));
    let post_as = |basic: &str, path: &str, ct: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {basic}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let post = |path: &str, ct: &str, body: &str| post_as(&basic, path, ct, body);
    let raw = match door {
        Door::Xip => format!(
            "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
            xip_query(PARTNER, &a, b, &auth(SECRET, PARTNER, &a, b))
        ),
        Door::Deferred => format!(
            "GET /request/call.php?{} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n",
            xip_query("later", &a, b, &auth(LATER_SECRET, "later", &a, b))
        ),
        Door::Native => post(
            "/v1/calls",
            "application/json",
            &serde_json::json!({
                "a": { "participants": [{ "number": format!("+{a}") }] },
                "b": { "participants": [{ "number": format!("+{b}") }] },
            })
            .to_string(),
        ),
        Door::Ami => post_as(
            &base64::engine::general_purpose::STANDARD.encode(format!("pbxcrm:{CRM_PASSWORD}")),
            "/v1/calls",
            "application/json",
            &serde_json::json!({
                "a": { "participants": [{ "number": format!("+{a}"), "retries": 0 }] },
                "b": { "participants": [{ "number": format!("+{b}") }] },
            })
            .to_string(),
        ),
        Door::Spokn => post(
            "/c2c/1.0/call",
            "application/x-www-form-urlencoded",
            &format!("aparty=%2B{a}&bparty=%2B{b}"),
        ),
        Door::Airtel => post(
            "/v2/execute/workflow",
            "application/json",
            &serde_json::json!({
                "callFlowId": "FLOW-1",
                "customerId": "CUST-1",
                "callType": "OUTBOUND",
                "callerId": "8000000001",
                "callFlowConfiguration": {
                    "initiateCall_1": {
                        "callerId": "8000000001",
                        "mergingStrategy": "SEQUENTIAL",
                        "participants": [{ "participantAddress": airtel_a, "callerId": "8000000001", "participantName": "A", "maxRetries": 0, "maxTime": 0 }],
                        "maxTime": 0
                    },
                    "addParticipant_1": {
                        "mergingStrategy": "SEQUENTIAL",
                        "maxTime": 0,
                        "participants": [{ "participantAddress": "9810000002", "callerId": "8000000001", "participantName": "B", "maxRetries": 0, "maxTime": 0 }]
                    }
                }
            })
            .to_string(),
        ),
        Door::RoundTrip => unreachable!("a RoundTrip post names an earlier call: roundtrip_for"),
        Door::Cloud9 => {
            let body = format!(
                "TIMESTAMP=2026-11-22+10%3A15%3A00&IMSI=234180000000001&TRANSACTIONID={n}&CARRIERID={CARRIER}&MSISDN=%2B447700900123&MCC=234&MNC=18&TADIG=GBWC9&REQUEST_TYPE=AUTH_CALLBACK_CALL&CALLDESTINATION=%2B14155550100&USER_BALANCE=0.00&IOT=0&IOT_CHARGE=0.00&MSRN=%2B447700900001&ECC=1"
            );
            format!(
                "POST /cloud9/moc HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
    };
    // The A number as the upstream is sent it.
    let a = if door == Door::Airtel {
        format!("91{airtel_a}")
    } else {
        a
    };
    (a, raw)
}

/// A request that got a success answer.
#[derive(Debug, Clone)]
struct Acked {
    door: Door,
    n: u64,
    a: String,
    call_id: Option<String>,
}

fn rounds() -> usize {
    std::env::var("C2CD_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[test]
fn kill_9_under_load_loses_no_answered_request_and_originates_nothing_twice() {
    let upstream = Upstream::start(Behaviour::Reply(200, "text/plain", "Result=0&Message=OK"));
    let receiver = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let opens = opening();
    let pbx = crate::ami::Asterisk::start();
    let mut text = config(&upstream.url(), &receiver.url(), &pbx.addr);
    if let Some(at) = &opens {
        text.push_str(&later_partner(at));
    }
    let doors: Vec<Door> = DOORS
        .iter()
        .copied()
        .chain(opens.is_some().then_some(Door::Deferred))
        .collect();
    let doors = Arc::new(doors);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);

    let addr = Arc::new(Mutex::new(None::<SocketAddr>));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let sent = Arc::new(AtomicU64::new(0));
    // The first refusal of each door, to say why when a door had no success.
    let refused = Arc::new(Mutex::new(HashMap::<Door, String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (doors, addr, stop, next, acked, sent, refused) = (
                doors.clone(),
                addr.clone(),
                stop.clone(),
                next.clone(),
                acked.clone(),
                sent.clone(),
                refused.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(to) = *addr.lock().unwrap() else {
                        std::thread::yield_now();
                        continue;
                    };
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let mut door = doors[(n % doors.len() as u64) as usize];
                    // RoundTrip names a call answered before: `a` is its id.
                    let earlier = (door == Door::RoundTrip)
                        .then(|| {
                            let acked = acked.lock().unwrap();
                            acked
                                .iter()
                                .rev()
                                .filter(|x| x.door != Door::RoundTrip)
                                .find_map(|x| x.call_id.clone())
                        })
                        .flatten();
                    let (a, raw) = match earlier {
                        Some(id) => (id.clone(), roundtrip_for(&id, n)),
                        None => {
                            door = if door == Door::RoundTrip {
                                Door::Xip
                            } else {
                                door
                            };
                            request_for(door, n)
                        }
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = try_request(to, raw.as_bytes()) else {
                        continue;
                    };
                    // Spokn answers its refusals 200 too, with another <code>.
                    let ok = (200..300).contains(&r.status)
                        && (door != Door::Spokn || r.text().contains("<code>200</code>"));
                    if ok {
                        let call_id = if door == Door::RoundTrip {
                            // `<ID>…</ID>`: the call the data was matched to.
                            r.text()
                                .trim()
                                .strip_prefix("<ID>")
                                .and_then(|t| t.strip_suffix("</ID>"))
                                .map(str::to_string)
                        } else {
                            r.header("c2c-call-id").map(str::to_string)
                        };
                        acked.lock().unwrap().push(Acked {
                            door,
                            n,
                            a,
                            call_id,
                        });
                    } else {
                        let why = format!("{} {}", r.status, r.text());
                        refused.lock().unwrap().entry(door).or_insert(why);
                    }
                }
            })
        })
        .collect();

    let mut dir = Some(dir);
    let mut kills = 0;
    // Until 5 s past the deferring partner's opening, if it is on.
    let past_opening = opens.as_ref().map(|at| {
        let left = at
            .timestamp()
            .duration_since(jiff::Timestamp::now())
            .as_secs_f64();
        Instant::now() + Duration::from_secs_f64(left.max(0.0) + 5.0)
    });
    while kills < rounds() || past_opening.is_some_and(|t| Instant::now() < t) {
        let d = Daemon::start_in(dir.take().unwrap(), path.clone());
        *addr.lock().unwrap() = Some(d.addr);
        // A random moment: fault injection, not a wait for something.
        let before = acked.lock().unwrap().len();
        std::thread::sleep(Duration::from_millis(100 + fastrand::u64(0..400)));
        // At least one answer in every round, so that every round kills load.
        let deadline = Instant::now() + WAIT;
        while acked.lock().unwrap().len() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        *addr.lock().unwrap() = None;
        dir = Some(d.kill9());
        kills += 1;
    }
    // The last life: load a little more, then let the calls cut off by the
    // kills reach their deadlines and the callbacks drain.
    let mut d = Daemon::start_in(dir.take().unwrap(), path.clone());
    *addr.lock().unwrap() = Some(d.addr);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let settled = |d: &Daemon| {
        let conn = rusqlite::Connection::open_with_flags(
            d.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let open: i64 = conn
            .query_row(
                "SELECT count(*) FROM calls WHERE state NOT IN ('rejected', 'handed_off', 'completed', 'failed', 'lost')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM callbacks WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (open, pending)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while settled(&d) != (0, 0) {
        if Instant::now() > deadline {
            let conn = rusqlite::Connection::open(d.db()).unwrap();
            let mut stmt = conn
                .prepare(
                    "SELECT c.id, c.dialect, c.state, c.deadline_at, c.provider,
                            (SELECT group_concat(kind || ':' || state, ' ') FROM call_events e WHERE e.call_id = c.id)
                     FROM calls c WHERE state NOT IN ('rejected', 'handed_off', 'completed', 'failed', 'lost')",
                )
                .unwrap();
            let open: Vec<String> = stmt
                .query_map([], |r| {
                    Ok(format!(
                        "{} {} {} deadline {:?} provider {:?} events {:?}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            panic!(
                "not settled within 30 s: (calls open, callbacks pending) = {:?}; now {}; open calls:\n{}",
                settled(&d),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
                open.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    d.wait_logged("listening");
    let (status, dir, _log) = d.stop();
    assert!(status.success(), "{status:?}");

    // What the database holds.
    let conn = rusqlite::Connection::open(dir.path().join("c2cd.db")).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut states: HashMap<String, String> = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, state FROM calls").unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (id, state) = row.unwrap();
        states.insert(id, state);
    }
    let mut transactions: HashSet<String> = HashSet::new();
    let mut stmt = conn
        .prepare("SELECT transaction_id FROM cloud9_requests WHERE status = 200")
        .unwrap();
    for t in stmt
        .query_map([], |r| r.get::<_, Option<String>>(0))
        .unwrap()
    {
        if let Some(t) = t.unwrap() {
            transactions.insert(t);
        }
    }

    // The RoundTrip posts answered: (call id, disposition).
    let mut sold: HashSet<(String, String)> = HashSet::new();
    let mut stmt = conn
        .prepare("SELECT call_id, CAST(body AS TEXT) FROM sales WHERE status = 200")
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap()
    {
        let (call, body) = row.unwrap();
        let mark = body
            .split("<Disposition>")
            .nth(1)
            .and_then(|m| m.split('<').next())
            .unwrap_or_default()
            .to_string();
        sold.insert((call.unwrap_or_default(), mark));
    }

    // What the upstream saw: each A number once at most.
    let mut originated: HashMap<String, usize> = HashMap::new();
    for r in upstream.received.lock().unwrap().iter() {
        let params = form_urlencoded::parse(r.query.as_bytes())
            .chain(form_urlencoded::parse(r.body.as_bytes()));
        for (k, a) in params {
            if k == "RequestorPhone" {
                *originated.entry(a.into_owned()).or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = originated.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "originated more than once: {twice:?}");
    // What the Asterisk was asked: each call once at most (a ChannelId is
    // `c2cd-<call>-a1` for a call's first A attempt; these have no retries).
    let mut on_pbx: HashMap<String, usize> = HashMap::new();
    for m in pbx.actions.0.lock().unwrap().iter() {
        if crate::ami::get(m, "Action") == "Originate" {
            let channel = crate::ami::get(m, "ChannelId");
            let call = channel
                .strip_prefix("c2cd-")
                .and_then(|c| c.rsplit_once('-'))
                .map_or(channel, |(call, _)| call);
            *on_pbx.entry(call.to_string()).or_default() += 1;
        }
    }
    let twice: Vec<_> = on_pbx.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "originated on the Asterisk more than once: {twice:?}"
    );

    // Every answered request is there, as answered.
    let acked = acked.lock().unwrap().clone();
    let mut by_door: HashMap<Door, usize> = HashMap::new();
    let mut deferred_lost = 0;
    let mut ami_lost = 0;
    for a in &acked {
        *by_door.entry(a.door).or_default() += 1;
        if a.door == Door::Cloud9 {
            assert!(transactions.contains(&a.n.to_string()), "{a:?}: no record");
            continue;
        }
        if a.door == Door::RoundTrip {
            assert_eq!(
                a.call_id.as_deref(),
                Some(a.a.as_str()),
                "{a:?}: matched another call"
            );
            assert!(
                sold.contains(&(a.a.clone(), format!("crash-{}", a.n))),
                "{a:?}: its sales data is not in the database"
            );
            continue;
        }
        let id = a
            .call_id
            .as_deref()
            .unwrap_or_else(|| panic!("{a:?}: no call id"));
        let state = states
            .get(id)
            .unwrap_or_else(|| panic!("{a:?}: not in the database"));
        if a.door == Door::Ami {
            // Answered once the Asterisk queued the Originate; its end comes
            // in events a kill may miss, and then the call is reconciled.
            assert!(
                matches!(state.as_str(), "completed" | "lost"),
                "{a:?}: {state}"
            );
            ami_lost += usize::from(state == "lost");
            assert_eq!(on_pbx.get(id), Some(&1), "{a:?}: not originated once");
            continue;
        }
        if a.door == Door::Deferred && state == "lost" {
            // Answered when it was deferred, cut off by a kill while it was
            // being placed: c2cd cannot know whether the upstream took it, so
            // it is reconciled as lost, never placed again.
            deferred_lost += 1;
            assert!(originated.get(&a.a).copied().unwrap_or(0) <= 1, "{a:?}");
            continue;
        }
        assert_eq!(state, "handed_off", "{a:?}");
        assert_eq!(originated.get(&a.a), Some(&1), "{a:?}: not originated once");
    }
    // Every answered call's callbacks were delivered (none pending, none dead).
    let undelivered: i64 = conn
        .query_row(
            "SELECT count(*) FROM callbacks WHERE state <> 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(undelivered, 0);
    let cut_off = states.len()
        - acked
            .iter()
            .filter(|a| a.door != Door::Cloud9 && a.door != Door::RoundTrip)
            .count();
    let lost: i64 = conn
        .query_row(
            "SELECT count(DISTINCT call_id) FROM call_events WHERE kind = 'lost'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    eprintln!(
        "crash: {kills} kills; {} requests sent, {} answered with success ({:?}); {} calls recorded, {cut_off} of them not answered (cut off by a kill); {} reached the upstream, none twice; {} Originates on the Asterisk, none twice; {lost} reconciled as lost ({deferred_lost} of them answered when deferred, cut off while being placed; {ami_lost} answered AMI calls whose end a kill missed); integrity ok; every callback delivered",
        sent.load(Ordering::Relaxed),
        acked.len(),
        by_door,
        states.len(),
        originated.len(),
        on_pbx.len(),
    );
    for &door in doors.iter() {
        assert!(
            by_door.get(&door).copied().unwrap_or(0) > 0,
            "no {door:?} request was answered: {:?}",
            refused.lock().unwrap().get(&door)
        );
    }
}
