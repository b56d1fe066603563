//! The AMI provider against a scripted Asterisk on loopback that answers as the
//! real Asterisk 22 of `shared/protocols` did: banner, login, Originate queued,
//! then OriginateResponse and the channel events, in the orders the transcript
//! shows (the verdict on A before or after its Hangup).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

use crate::common::*;

/// One AMI message: its fields in order.
pub(crate) type Fields = Vec<(String, String)>;
/// The actions a scripted Asterisk was sent, and a signal for each new one.
pub(crate) type Seen = Arc<(Mutex<Vec<Fields>>, Condvar)>;

/// A scripted Asterisk manager (the crash test's PBX too).
pub(crate) struct Asterisk {
    pub(crate) addr: String,
    pub(crate) actions: Seen,
}

fn read_message(r: &mut BufReader<TcpStream>) -> Option<Fields> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            if fields.is_empty() {
                continue;
            }
            return Some(fields);
        }
        let (k, v) = line.split_once(": ").unwrap_or((line, ""));
        fields.push((k.to_string(), v.to_string()));
    }
}

pub(crate) fn get<'a>(m: &'a [(String, String)], k: &str) -> &'a str {
    m.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn send(w: &mut TcpStream, text: &str) {
    let _ = w.write_all(text.replace('\n', "\r\n").as_bytes());
}

impl Asterisk {
    pub(crate) fn start() -> Asterisk {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let actions: Seen = Arc::default();
        let seen = actions.clone();
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, seen));
            }
        });
        Asterisk { addr, actions }
    }

    /// Waits for an action named `name` whose `key` is `value`.
    fn wait_action(&self, name: &str, key: &str, value: &str) -> Fields {
        let (lock, cv) = &*self.actions;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, WAIT, |a| {
                !a.iter()
                    .any(|m| get(m, "Action") == name && get(m, key).contains(value))
            })
            .unwrap();
        guard
            .iter()
            .find(|m| get(m, "Action") == name && get(m, key).contains(value))
            .unwrap_or_else(|| panic!("no {name} with {key} {value}: {:?}", *guard))
            .clone()
    }
}

/// What B's number (the digits of a dial string, `Local/101@c2c-test`) does
/// when dialled, as the transcript's dialplan: 101 busy, 102 rings out, 103
/// congestion, the rest answer.
fn dial_status(dial: &str) -> &'static str {
    let number = dial.split(['/', '@']).nth(1).unwrap_or_default();
    match number {
        "101" => "BUSY",
        "102" => "NOANSWER",
        "103" => "CONGESTION",
        _ => "ANSWER",
    }
}

/// B's rounds as the Originate hands them over: the dialplan's `C2C_B_DIAL_<n>`
/// variables, or `Application: Dial`'s `Data`.
fn b_rounds(m: &[(String, String)]) -> Vec<Vec<String>> {
    let vars: Vec<(&str, &str)> = m
        .iter()
        .filter(|(k, _)| k == "Variable")
        .filter_map(|(_, v)| v.split_once('='))
        .collect();
    let var = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let rounds: Vec<&str> = if get(m, "Application") == "Dial" {
        vec![get(m, "Data").split(',').next().unwrap_or_default()]
    } else {
        let n: usize = var("C2C_B_ROUNDS")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (1..=n)
            .filter_map(|i| var(&format!("C2C_B_DIAL_{i}")))
            .collect()
    };
    rounds
        .into_iter()
        .map(|r| r.split('&').map(str::to_string).collect())
        .collect()
}

/// One manager session: the transcript's answers, chosen by leg A's number
/// (the dialplan of shared/protocols: 100 answers, 101 busy, 102 rings …) and,
/// once A answers, B's rounds dialled in turn as `extensions_c2cd.conf` does.
fn serve(stream: TcpStream, seen: Seen) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    send(&mut w, "Asterisk Call Manager/11.0.0\n");
    // The ActionID of each channel still ringing, for its verdict on a hang-up.
    let mut ringing: Vec<(String, String)> = Vec::new();
    while let Some(m) = read_message(&mut r) {
        {
            let (lock, cv) = &*seen;
            lock.lock().unwrap().push(m.clone());
            cv.notify_all();
        }
        let id = get(&m, "ActionID").to_string();
        match get(&m, "Action") {
            "Login" if get(&m, "Secret") != "c2c-secret" => {
                // As Asterisk answers a wrong secret.
                send(
                    &mut w,
                    &format!("Response: Error\nActionID: {id}\nMessage: Authentication failed\n\n"),
                );
            }
            "Login" => {
                send(
                    &mut w,
                    &format!(
                        "Response: Success\nActionID: {id}\nMessage: Authentication accepted\n\n"
                    ),
                );
                // The box's own calls end meanwhile (cdr_manager): one from a
                // trunk to the call center's number, one of c2cd's channels and
                // one between extensions, which RoundTrip cannot match.
                for (unique, source, destination) in [
                    ("1700000000.7", "3105550199", "8881234567"),
                    ("c2cd-0192-a1", "3105550199", "8881234567"),
                    ("1700000000.8", "201", "202"),
                ] {
                    send(&mut w, &format!("Event: Cdr\nPrivilege: cdr,all\nAccountCode: \nSource: {source}\nDestination: {destination}\nDestinationContext: from-trunk\nCallerID: <{source}>\nChannel: PJSIP/trunk-00000007\nDestinationChannel: PJSIP/agent-00000008\nLastApplication: Dial\nLastData: PJSIP/agent,30\nStartTime: 2026-11-22 02:00:00\nAnswerTime: 2026-11-22 02:00:04\nEndTime: 2026-11-22 02:05:00\nDuration: 300\nBillableSeconds: 296\nDisposition: ANSWERED\nAMAFlags: DOCUMENTATION\nUniqueID: {unique}\nUserField: \n\n"));
                }
            }
            "Ping" => send(
                &mut w,
                &format!("Response: Success\nActionID: {id}\nPing: Pong\nTimestamp: 1.0\n\n"),
            ),
            "Hangup" => {
                let ch = get(&m, "Channel").to_string();
                let Some(at) = ringing.iter().position(|(c, _)| *c == ch) else {
                    send(
                        &mut w,
                        &format!("Response: Error\nActionID: {id}\nMessage: No such channel\n\n"),
                    );
                    continue;
                };
                let (_, origin) = ringing.remove(at);
                send(
                    &mut w,
                    &format!("Response: Success\nActionID: {id}\nMessage: Channel Hungup\n\n"),
                );
                // Section 16: the ringing originate then fails with Reason 0.
                send(&mut w, &format!("Event: Hangup\nPrivilege: call,all\nUniqueid: {ch}\nLinkedid: {ch}\nCause: 16\nCause-txt: Normal Clearing\n\n"));
                send(&mut w, &format!("Event: OriginateResponse\nPrivilege: call,all\nActionID: {origin}\nResponse: Failure\nChannel: x\nReason: 0\nUniqueid: {ch}\n\n"));
            }
            "Originate" => {
                let chan = get(&m, "ChannelId").to_string();
                let a = get(&m, "Channel").to_string();
                let b = get(&m, "Exten").to_string();
                if a.contains("/999@") {
                    // Section 2: refused at once, no event follows.
                    send(&mut w, &format!("Response: Error\nActionID: {id}\nMessage: Extension does not exist.\n\n"));
                    continue;
                }
                send(&mut w, &format!("Response: Success\nActionID: {id}\nMessage: Originate successfully queued\n\n"));
                if a.contains("/106@") {
                    // The manager goes away mid-call.
                    return;
                }
                let ev = |name: &str, rest: &str| {
                    format!("Event: {name}\nPrivilege: call,all\nUniqueid: {chan}\nLinkedid: {chan}\n{rest}\n")
                };
                let verdict = |response: &str, reason: &str| {
                    format!("Event: OriginateResponse\nPrivilege: call,all\nActionID: {id}\nResponse: {response}\nChannel: {a}\nContext: c2c-test\nExten: {b}\nReason: {reason}\nUniqueid: {chan}\nCallerIDNum: <unknown>\n\n")
                };
                let mut script = vec![ev(
                    "Newchannel",
                    "Channel: Local/x@c2c-test-00000001;1\nChannelState: 0\n",
                )];
                if a.contains("/101@") {
                    // Section 5: the Hangup and Cdr come before the verdict.
                    script.push(ev("Hangup", "Cause: 17\nCause-txt: User busy\n"));
                    script.push(verdict("Failure", "5"));
                } else if a.contains("/102@") {
                    // Section 16: rings until hung up.
                    ringing.push((chan.clone(), id.clone()));
                } else if a.contains("/103@") {
                    // Section 7: congestion.
                    script.push(ev(
                        "Hangup",
                        "Cause: 34\nCause-txt: Circuit/channel congestion\n",
                    ));
                    script.push(verdict("Failure", "8"));
                } else if a.contains("/104@") {
                    // Section 8 (reordered, as section 3 has it): the verdict,
                    // Reason 0, before the Hangup that says "rejected".
                    script.push(verdict("Failure", "0"));
                    script.push(ev("Hangup", "Cause: 21\nCause-txt: Call Rejected\n"));
                } else if a.contains("/105@") {
                    // Section 6: no answer within Timeout.
                    script.push(ev(
                        "Hangup",
                        "Cause: 19\nCause-txt: User alerting, no answer\n",
                    ));
                    script.push(verdict("Failure", "3"));
                } else if a.contains("/108@") {
                    // Sections 10 and 14 (no channel, or a duplicate ChannelId):
                    // Reason 0, and no Hangup follows.
                    script.push(verdict("Failure", "0"));
                } else {
                    // A answers (100, 107): the dialplan dials B's rounds from A's
                    // channel until one answers (section 1, section 9 for busy).
                    // 107's verdict comes last, after the Hangup and the Cdr.
                    let late = a.contains("/107@");
                    if !late {
                        script.push(verdict("Success", "4"));
                    }
                    'rounds: for (r, round) in b_rounds(&m).iter().enumerate() {
                        let dest = |k: usize| format!("{chan}-b{r}{k}");
                        for (k, d) in round.iter().enumerate() {
                            let dial_string = d.split_once('/').map_or(d.as_str(), |x| x.1);
                            script.push(ev(
                                "DialBegin",
                                &format!("Channel: {a}\nDestChannel: {d}-0000;1\nDestUniqueid: {}\nDialString: {dial_string}\n", dest(k)),
                            ));
                        }
                        // Busy and congested dials end first, then the first to
                        // answer; the rest still ringing are cancelled.
                        let winner = round.iter().position(|d| dial_status(d) == "ANSWER");
                        let mut ends: Vec<(u8, usize, &str)> = round
                            .iter()
                            .enumerate()
                            .map(|(k, d)| match (dial_status(d), winner) {
                                (s @ ("BUSY" | "CONGESTION"), _) => (0, k, s),
                                (_, Some(w)) if w == k => (1, k, "ANSWER"),
                                (_, Some(_)) => (2, k, "CANCEL"),
                                (s, None) => (0, k, s),
                            })
                            .collect();
                        ends.sort();
                        for (_, k, status) in ends {
                            script.push(ev(
                                "DialEnd",
                                &format!(
                                    "Channel: {a}\nDestUniqueid: {}\nDialStatus: {status}\n",
                                    dest(k)
                                ),
                            ));
                        }
                        if winner.is_some() {
                            break 'rounds;
                        }
                    }
                    script.push(ev("Hangup", "Cause: 16\nCause-txt: Normal Clearing\n"));
                    if late {
                        script.push(ev("Cdr", "Disposition: ANSWERED\n"));
                        script.push(verdict("Success", "4"));
                    }
                }
                for e in script {
                    send(&mut w, &e);
                }
            }
            _ => send(
                &mut w,
                &format!("Response: Error\nActionID: {id}\nMessage: Invalid/unknown command\n\n"),
            ),
        }
    }
}

fn config(ami: &str) -> String {
    base_config(&format!(
        r#"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "pbx"

[[provider]]
name = "pbx"
kind = "ami"
address = "{ami}"
username = "c2c"
secret = "c2c-secret"
channel = "Local/{{number}}@c2c-test/n"
context = "c2c-test"
variables = ["C2C_SITE=test"]
caller_id = '"Test" <{{number}}>'
"#
    ))
}

fn place(d: &Daemon, a: &str, b: &str) -> Response {
    place_plan(
        d,
        serde_json::json!({
            "a": {"participants": [{"number": a, "retries": 0}]},
            "b": {"participants": [{"number": b}]},
            "time_limit": 600,
        }),
    )
}

fn place_plan(d: &Daemon, plan: serde_json::Value) -> Response {
    use base64::Engine;
    let body = plan.to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789");
    request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn calls_on_asterisk_end_as_the_manager_reports() {
    let pbx = Asterisk::start();
    let mut d = Daemon::start(&config(&pbx.addr));
    d.wait_logged("logged in as");
    let login = pbx.wait_action("Login", "Username", "c2c");
    assert_eq!(get(&login, "Events"), "call,cdr");

    // Both answer; A hangs up: completed.
    let r = place(&d, "100", "200");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let o = pbx.wait_action("Originate", "ChannelId", &id);
    assert_eq!(get(&o, "Channel"), "Local/100@c2c-test/n");
    assert_eq!(
        (get(&o, "Context"), get(&o, "Exten"), get(&o, "Async")),
        ("c2c-test", "200", "true")
    );
    assert_eq!(get(&o, "ChannelId"), format!("c2cd-{id}-a1"));
    assert_eq!(get(&o, "Timeout"), "30000");
    let vars: Vec<&str> = o
        .iter()
        .filter(|(k, _)| k == "Variable")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        vars.contains(&"TIMEOUT(absolute)=720")
            && vars.contains(&"C2C_TIME_LIMIT=600")
            && vars.contains(&"C2C_SITE=test"),
        "{vars:?}"
    );
    let call = d.call(&id);
    let legs: Vec<&str> = call["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    assert_eq!(legs, ["hung_up", "hung_up"]);

    // A busy, its Hangup before the verdict: failed, cause 17.
    let id = place(&d, "101", "200").call_id();
    d.wait_log(&format!("call {id}: a_ended_busy -> failed"));
    assert_eq!(d.call(&id)["cdr"]["cause"], 17);

    // A answers, B busy: failed, B's leg busy.
    let id = place(&d, "100", "101").call_id();
    d.wait_log(&format!("call {id}: b_ended_busy -> failed"));
    let legs = d.call(&id)["legs"].clone();
    assert_eq!(
        (legs[0]["state"].as_str(), legs[1]["state"].as_str()),
        (Some("hung_up"), Some("busy"))
    );

    // A rings; the partner hangs up: c2cd sends Hangup on its channel.
    let id = place(&d, "102", "200").call_id();
    d.wait_log(&format!("call {id}: a_ringing -> dialing_a"));
    let admin = format!(
        "POST /v1/calls/{id}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(request(d.addr, &admin).status, 200);
    let h = pbx.wait_action("Hangup", "Channel", &id);
    assert_eq!(get(&h, "Channel"), format!("c2cd-{id}-a1"));
    assert_eq!(d.call(&id)["state"], "failed");

    // Congestion, rejection and no answer each end leg A their way.
    for (a, end, cause) in [
        ("103", "a_ended_failed", 34),
        ("104", "a_ended_rejected", 21),
        ("105", "a_ended_no_answer", 19),
    ] {
        let id = place(&d, a, "200").call_id();
        d.wait_log(&format!("call {id}: {end} -> failed"));
        assert_eq!(d.call(&id)["cdr"]["cause"], cause, "A {a}");
    }

    // An Originate the manager refuses at once: 502, and the row says why.
    let r = place(&d, "999", "200");
    assert_eq!(r.status, 502, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "failed");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("Extension does not exist"),
        "{call}"
    );

    // A reload keeps the manager connection: no second login.
    let logins = |pbx: &Asterisk| {
        let (lock, _) = &*pbx.actions;
        lock.lock()
            .unwrap()
            .iter()
            .filter(|m| get(m, "Action") == "Login")
            .count()
    };
    assert_eq!(logins(&pbx), 1);
    d.signal("-HUP");
    d.wait_log("config reloaded");
    let id = place(&d, "100", "200").call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    assert_eq!(logins(&pbx), 1, "the reload reused the manager");

    // The manager connection drops mid-call: the call fails, c2cd logs in again.
    let id = place(&d, "106", "200").call_id();
    d.wait_log(&format!("call {id}: a_ended_failed -> failed"));
    d.wait_log("logged in as");
}

#[test]
fn a_refused_login_is_not_hammered_calls_get_an_answer_and_a_mended_secret_logs_in() {
    let pbx = Asterisk::start();
    let good = config(&pbx.addr);
    let mut d =
        Daemon::start(&good.replace("secret = \"c2c-secret\"", "secret = \"stale-secret\""));
    let refused = d.wait_logged("refused: Authentication failed");
    // Not retried soon: the credentials will not mend by themselves.
    let wait: f64 = refused
        .rsplit("reconnecting in ")
        .next()
        .and_then(|w| w.trim().trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("{refused}"));
    assert!(wait >= 30.0, "{refused}");
    assert!(!refused.contains("stale-secret"), "{refused}");
    let metrics = d.get("/metrics").text();
    assert!(
        metrics.contains("c2cd_provider_available{provider=\"pbx\",kind=\"ami\"} 0"),
        "{metrics}"
    );

    // Calls meanwhile get an answer at once, and a row that says why;
    // none of them makes c2cd log in again.
    for _ in 0..5 {
        let r = place(&d, "100", "200");
        assert!(r.status >= 500, "{} {}", r.status, r.text());
        let call = d.call(&r.call_id());
        assert_eq!(call["state"], "failed", "{call}");
        assert!(
            call["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{call}"
        );
    }
    let logins = {
        let (lock, _) = &*pbx.actions;
        let n = lock
            .lock()
            .unwrap()
            .iter()
            .filter(|m| get(m, "Action") == "Login")
            .count();
        n
    };
    assert_eq!(logins, 1, "one login, not one per call");

    // The operator mends the secret: the reload logs in and calls go through.
    d.reload(&good);
    d.wait_log("logged in as");
    let id = place(&d, "100", "200").call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
}

/// The legs of call `id`: `a1 cancelled`, `b2 hung_up`, …
fn legs(d: &Daemon, id: &str) -> Vec<String> {
    d.call(id)["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}{} {}",
                l["side"].as_str().unwrap(),
                l["attempt"],
                l["state"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn plans_play_out_on_asterisk_in_rounds() {
    let pbx = Asterisk::start();
    let monitor = tempfile::tempdir().unwrap();
    let cfg = config(&pbx.addr).replace(
        "variables = ",
        &format!("recordings_dir = {:?}\nvariables = ", monitor.path()),
    );
    let mut d = Daemon::start(&cfg);
    d.wait_logged("logged in as");

    // A in parallel: 102 rings, 100 answers and wins, so c2cd hangs up 102.
    // B in turn: 101 busy twice (a retry), then 300 answers. Recorded.
    let r = place_plan(
        &d,
        serde_json::json!({
            "a": {"strategy": "parallel", "caller_id": "+16045551234",
                  "participants": [{"number": "102"}, {"number": "100"}]},
            "b": {"strategy": "sequential", "retry_delay": 0,
                  "participants": [{"number": "101", "retries": 1}, {"number": "300"}]},
            "time_limit": 600,
            "record": true,
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let o = pbx.wait_action("Originate", "ChannelId", &format!("{id}-a2"));
    let vars: Vec<&str> = o
        .iter()
        .filter(|(k, _)| k == "Variable")
        .map(|(_, v)| v.as_str())
        .collect();
    for want in [
        "C2C_B_ROUNDS=3",
        "C2C_B_DIAL_1=Local/101@c2c-test/n",
        "C2C_B_DIAL_2=Local/101@c2c-test/n",
        "C2C_B_DIAL_3=Local/300@c2c-test/n",
    ] {
        assert!(vars.contains(&want), "{want} not in {vars:?}");
    }
    assert!(
        vars.contains(&format!("C2C_RECORD=c2cd-{id}.wav").as_str()),
        "{vars:?}"
    );
    assert_eq!(get(&o, "CallerID"), "\"Test\" <16045551234>");
    let h = pbx.wait_action("Hangup", "Channel", &format!("{id}-a1"));
    assert_eq!(get(&h, "Channel"), format!("c2cd-{id}-a1"));
    assert_eq!(
        legs(&d, &id),
        [
            "a1 cancelled",
            "a2 hung_up",
            "b1 busy",
            "b2 busy",
            "b3 hung_up"
        ]
    );
    let call = d.call(&id);
    assert_eq!(
        call["recording"],
        format!("ami://pbx/c2cd-{id}.wav"),
        "{call}"
    );
    // c2cd serves the file once Asterisk has written it.
    let path = format!("/v1/calls/{id}/recording");
    let r = d.admin_get(&path, TOKEN);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("not on the box (yet)"), "{}", r.text());
    let wav = b"RIFF\x24\0\0\0WAVEfmt recorded by MixMonitor".to_vec();
    std::fs::write(monitor.path().join(format!("c2cd-{id}.wav")), &wav).unwrap();
    let r = d.admin_get(&path, TOKEN);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    assert_eq!(r.body, wav);
    // A link in Asterisk's directory is not followed.
    let file = monitor.path().join(format!("c2cd-{id}.wav"));
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(d.config.as_path(), &file).unwrap();
    let r = d.admin_get(&path, TOKEN);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("recording_unreadable"), "{}", r.text());

    // B in parallel: 101 busy, 300 answers, 102 is cancelled.
    let id = place_plan(
        &d,
        serde_json::json!({
            "a": {"participants": [{"number": "100"}]},
            "b": {"strategy": "parallel",
                  "participants": [{"number": "101"}, {"number": "300"}, {"number": "102"}]},
        }),
    )
    .call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let o = pbx.wait_action("Originate", "ChannelId", &id);
    assert!(
        o.iter().any(|(k, v)| k == "Variable"
            && v == "C2C_B_DIAL_1=Local/101@c2c-test/n&Local/300@c2c-test/n&Local/102@c2c-test/n"),
        "{o:?}"
    );
    assert_eq!(
        legs(&d, &id),
        ["a1 hung_up", "b1 busy", "b2 hung_up", "b3 cancelled"]
    );

    // A in turn, round robin over two: the first busy, the second answers;
    // its verdict comes after its Hangup and Cdr (section 1's order reversed).
    let id = place_plan(
        &d,
        serde_json::json!({
            "a": {"strategy": "sequential", "retry_delay": 0,
                  "participants": [{"number": "101"}, {"number": "107"}]},
            "b": {"participants": [{"number": "300"}]},
        }),
    )
    .call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    assert_eq!(legs(&d, &id), ["a1 busy", "a2 hung_up", "b1 hung_up"]);

    // No channel at all (section 10's Bogus/xyz, section 14's duplicate
    // ChannelId): Reason 0 and no Hangup. The try fails once its cause is
    // given up on.
    let id = place(&d, "108", "300").call_id();
    d.wait_log(&format!("call {id}: a_ended_failed -> failed"));
    assert_eq!(d.call(&id)["cdr"]["cause"], 34);
}

#[test]
fn application_dial_takes_b_in_one_round() {
    let pbx = Asterisk::start();
    let cfg = config(&pbx.addr).replace(
        "context = \"c2c-test\"",
        "dial = \"Local/{number}@c2c-test/n\"",
    );
    let mut d = Daemon::start(&cfg);
    d.wait_logged("logged in as");

    // B in parallel is one Dial.
    let id = place_plan(
        &d,
        serde_json::json!({
            "a": {"participants": [{"number": "100"}]},
            "b": {"strategy": "parallel", "participants": [{"number": "101"}, {"number": "300"}]},
        }),
    )
    .call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let o = pbx.wait_action("Originate", "ChannelId", &id);
    assert_eq!(
        (get(&o, "Application"), get(&o, "Data")),
        (
            "Dial",
            "Local/101@c2c-test/n&Local/300@c2c-test/n,30,S(7200)"
        )
    );
    assert_eq!(legs(&d, &id), ["a1 hung_up", "b1 busy", "b2 hung_up"]);

    // B in turn needs the dialplan, and so does A in parallel: refused, and
    // the row says why.
    for plan in [
        serde_json::json!({
            "a": {"participants": [{"number": "100"}]},
            "b": {"participants": [{"number": "101"}, {"number": "300"}]},
        }),
        serde_json::json!({
            "a": {"strategy": "parallel", "participants": [{"number": "100"}, {"number": "102"}]},
            "b": {"participants": [{"number": "300"}]},
        }),
        serde_json::json!({
            "a": {"participants": [{"number": "100"}]},
            "b": {"participants": [{"number": "300"}]},
            "record": true,
        }),
    ] {
        let r = place_plan(&d, plan.clone());
        assert_eq!(r.status, 422, "{plan}: {}", r.text());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["code"], "provider_refuses", "{body}");
        assert!(
            body["title"]
                .as_str()
                .unwrap()
                .contains("(ami) cannot place"),
            "{body}"
        );
    }
}

/// The box's own calls come from the manager's Cdr events, in its time zone,
/// and RoundTrip matches sales data to them.
#[test]
fn the_pbxs_own_calls_are_ingested_from_cdr_events_for_roundtrip() {
    let pbx = Asterisk::start();
    let cfg = config(&pbx.addr)
        + r#"
[[partner]]
id = "center"
roundtrip = "restricted"
roundtrip_targets = ["8881234567"]
username = "center"
password = "center-password-0123456789"
"#;
    let mut d = Daemon::start_env(&cfg, &[("TZ", std::path::Path::new("America/Los_Angeles"))]);
    let line = d.wait_logged("CDR 1700000000.7 ingested as call");
    let call = line.rsplit("as call ").next().unwrap().trim().to_string();
    // 02:00 in Los Angeles in November is 10:00Z.
    let body = "<Call xmlns=\"http://www.dial800.com/roundtrip/2011-07-15\"><ANI>tel:3105550199</ANI><Target>tel:8881234567</Target><CallStart>2026-11-22T10:00:00Z</CallStart></Call>";
    use base64::Engine;
    let auth =
        base64::engine::general_purpose::STANDARD.encode("center:center-password-0123456789");
    let r = request(
        d.addr,
        &format!(
            "POST /roundtrip HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().trim(), format!("<ID>{call}</ID>"));
    // Only that one was ingested.
    let log = d.log_text();
    assert_eq!(log.matches("ingested as call").count(), 1, "{log}");
}
